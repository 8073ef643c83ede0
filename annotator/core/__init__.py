"""Ring 1: pure numpy data model (volume, geometry, labels, prompts, history); no Qt, torch or I/O libraries."""
