"""Benchmarks a person can run: `zaoxiang bench` (latency, batch time, images/min, peak VRAM)."""
