"""`annotator serve`: the engine behind an HTTP API, a front like cli/ and qt/ (see app.py)."""
