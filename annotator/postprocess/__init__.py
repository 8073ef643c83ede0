"""Ring 2: mask clean-up (holes, islands, largest component, smoothing), spacing-aware, Qt-free."""
