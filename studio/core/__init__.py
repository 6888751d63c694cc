"""Pure-Python core: requests, validation, events, settings and paths (no torch here)."""
