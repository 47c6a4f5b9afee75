"""Obtaining models: the CPU testbed (`models.testbed`) and model specs."""
