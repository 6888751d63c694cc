"""The studio's error family: what callers of `Studio` (CLI, window, API, tray) catch.

Every member carries one readable sentence as its message, so a caller shows `str(exc)` as it is;
a traceback is never what the person sees. The layers below raise their own members
(`ModelNotFoundError`, `WorkerSpecError`, `StoreError`, `SettingsError`) so nothing has to wrap them.
"""

from __future__ import annotations


class StudioError(Exception):
    """Something the studio could not do; the message says why in one sentence."""

    #: True when the person's input (a flag, a setting, a path) was wrong: the CLI exits with usage status.
    usage = False

    def __str__(self) -> str:  # KeyError subclasses would otherwise print the message quoted
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class StudioClosedError(StudioError, RuntimeError):
    """The studio was closed; nothing more can be started on it."""


class UnknownRequestError(StudioError, KeyError):
    """No request with this id is known to the running workers."""
