"""Slice views: the image, label overlay, prompts and the tools that turn mouse input into intents."""
