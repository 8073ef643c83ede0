"""Ring 3: the window; the only package that imports PySide6."""
