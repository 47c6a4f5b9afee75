"""Charts (altair) and documents (HTML, markdown) built from planner outputs.

Reports read only the planner's tables (profile, plan curves, choices, policies); they never
import torch.
"""
