"""Finding models on disk and making the built-in ones (the demo model, random-weight stand-ins)."""
