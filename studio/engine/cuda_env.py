"""Kept for the worker's import: the process environment now lives in core (the CLI sets it too)."""

from studio.core.process_env import DEFAULT_ALLOC_CONF, prepare_process_env

__all__ = ["DEFAULT_ALLOC_CONF", "prepare_process_env"]
