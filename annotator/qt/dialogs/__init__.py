"""Dialogs: series browser, keyboard shortcuts."""
