"""造相 Z-Image Studio: a local, offline text-to-image studio for Z-Image models."""

__version__ = "0.1.0"
