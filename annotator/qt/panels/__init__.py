"""Dock panels bound to the AnnotationDocument: labels, engine, history."""
