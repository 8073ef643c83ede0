"""Ring 2: plugin manifests and entry-point discovery; built-ins register the same way."""
