"""The whole-pipeline demo: ``twostage demo``."""
