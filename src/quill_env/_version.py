"""Quill's version (the single place it is written)."""

__version__ = "0.2.0"

DATA_FORMAT = "1"
"""Version of the data generator and variant recipes; bump to regenerate cached databases."""
