"""Helpers the test folders share (on the path through pytest's `pythonpath = ["tests"]`)."""
