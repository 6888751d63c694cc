"""The window's login password, kept only as a salted scrypt hash (`scrypt$n$r$p$salt$hash`).

A stored hash cannot be turned back into the password, so neither a copied settings file nor a
page that shows settings can give the password away; scrypt's memory cost makes guessing slow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
N, R, P = 2**14, 8, 1  # about 16 MiB and a few tens of ms per check: slow to guess, quick to log in
KEY_BYTES = 32
SALT_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * 1024 * 1024, dklen=KEY_BYTES)


def hash_password(password: str) -> str:
    """A new salted hash of `password` (a different string each call)."""
    salt = secrets.token_bytes(SALT_BYTES)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(_derive(password, salt, N, R, P))}"


def is_password_hash(text: str) -> bool:
    """Whether `text` is a hash this module made (else it is a plain password from an old file)."""
    parts = (text or "").split("$")
    return len(parts) == 6 and parts[0] == SCHEME and all(p.isdigit() for p in parts[1:4])


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored`; a malformed or empty hash matches nothing."""
    if not is_password_hash(stored) or not isinstance(password, str):
        return False
    _scheme, n, r, p, salt, digest = stored.split("$")
    try:
        expected = _unb64(digest)
        got = _derive(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, expected)
