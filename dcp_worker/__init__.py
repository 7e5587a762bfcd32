"""A DCP worker in Python: DCP work functions in V8 sandboxes, with or without a scheduler."""

__version__ = "0.1.0"
