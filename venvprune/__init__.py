"""venvprune: shrink a Python virtualenv safely, with a plan, a report and a verified result."""

__version__ = "0.1.0"
