"""annotator: label CT/MR scans with Segment Anything; imports nothing heavy (no Qt, no torch)."""

__version__ = "0.1.0"
