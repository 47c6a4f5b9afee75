"""ttc-planner: compute-allocation planner and cost simulator for LLM test-time compute.

The `planner` package is the decision side. It never imports torch, so a serving team can load a
policy file with nothing but numpy installed.
"""

__version__ = "0.1.0"
