"""The worker pool: one spawned process per GPU (or N CPU workers), balanced by measured speed.

Import `WorkerPool` from `studio.pool.pool` and `parse_workers` from `studio.pool.spec`; this package
init stays empty so that a spawned worker imports nothing heavy before pinning its device.
"""
