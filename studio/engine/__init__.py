"""Turning one job into one image on one device (torch + diffusers; runs inside a worker)."""
