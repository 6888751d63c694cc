"""One-time links that open the studio window: `<base>?zx_token=<ticket>`, made from the run's secret.

A browser's command line, and so the link it was given, is visible to every local user (/proc/*/cmdline),
for as long as the window stays open. So each link opens the window once, within `TICKET_LIFE_S`:
the window server (studio/ui/guard.py) trades a ticket for a session cookie and remembers it as used.
The run's secret, which makes tickets, never goes into a URL or a command line: it stays in the
launcher's memory and in the 0600 instance file, where a second launch reads it to make its own ticket
(studio/desktop/single_instance.py). Tickets carry their time, so the two processes need no call to agree.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import threading
import time
from collections.abc import Callable
from enum import Enum

TOKEN_PARAM = "zx_token"
TICKET_LIFE_S = 60.0
CLOCK_SKEW_S = 5.0  # a ticket made a moment "later" by another process's clock is still good
_NONCE_BYTES = 16
_TIME = struct.Struct(">Q")


class Ticket(Enum):
    """What a window server makes of a ticket."""

    GOOD = "good"  # made with this run's secret, fresh and unused: it opens the window (now used)
    SPENT = "spent"  # made with this run's secret, but used already or too old
    FOREIGN = "foreign"  # not made with this run's secret (another run's, a guess, a cookie)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _mac(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def make_ticket(secret: str, now: float | None = None) -> str:
    """A fresh ticket: when it was made, a random nonce, and their MAC under `secret` (URL-safe, no padding)."""
    made = int(time.time() if now is None else now)
    body = _TIME.pack(made) + secrets.token_bytes(_NONCE_BYTES)
    return base64.urlsafe_b64encode(body + _mac(secret, body)).rstrip(b"=").decode()


def open_link(base: str, secret: str) -> str:
    """`base` (the window's address, `http://host:port/`) with a fresh ticket."""
    return f"{base}?{TOKEN_PARAM}={make_ticket(secret)}"


def link_base(url: str) -> str:
    """The address without its ticket (what may be shown, logged and matched)."""
    return url.split("?", 1)[0]


class TicketBook:
    """The tickets one run accepts: made with its secret, at most `life_s` old, each used once."""

    def __init__(self, secret: str, life_s: float = TICKET_LIFE_S, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self.life_s = life_s
        self._clock = clock
        self._used: dict[bytes, int] = {}  # nonce -> made; forgotten once too old to be accepted anyway
        self._lock = threading.Lock()

    def take(self, ticket: str) -> Ticket:
        try:
            raw = base64.urlsafe_b64decode(ticket + "=" * (-len(ticket) % 4))
        except (binascii.Error, ValueError):
            return Ticket.FOREIGN
        size = _TIME.size + _NONCE_BYTES
        body, mac = raw[:size], raw[size:]
        if len(body) != size or not hmac.compare_digest(mac, _mac(self._secret, body)):
            return Ticket.FOREIGN
        (made,) = _TIME.unpack(body[:_TIME.size])
        nonce = body[_TIME.size:]
        now = self._clock()
        with self._lock:
            for old in [n for n, at in self._used.items() if now - at > self.life_s + CLOCK_SKEW_S]:
                del self._used[old]
            if nonce in self._used or not -CLOCK_SKEW_S <= now - made <= self.life_s:
                return Ticket.SPENT
            self._used[nonce] = made
        return Ticket.GOOD
