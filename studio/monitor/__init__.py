"""GPU (NVML) and CPU sampling on a background thread, kept in a ring buffer for the monitor tab."""
