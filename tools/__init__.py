"""Tools for developers, not installed with the studio: the demo model's training and evaluation,
the demo LoRA's training and the GPU measurements (`gpu/`)."""
