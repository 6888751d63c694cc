"""A generation opens no socket beyond loopback.

`zaoxiang generate` runs in a subprocess whose `sitecustomize` (first on PYTHONPATH, so every Python
process it spawns loads it too) wraps socket connect/connect_ex/sendto and getaddrinfo: any
address outside 127.0.0.0/8 / ::1 (or a host name that is not localhost) is written to a log and
refused. The hub-offline variables are removed from the environment first, so it is the studio
itself that keeps the hubs offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env

GUARD = r'''
import ipaddress, json, os, socket

_LOG = os.environ["ZAOXIANG_SOCKET_LOG"]


def _local(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("localhost", "", "0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(what, address):
    if isinstance(address, tuple) and address and not _local(address[0]):
        with open(_LOG, "a") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "call": what, "address": repr(address)}) + "\n")
        raise OSError(f"zaoxiang test guard: no network ({what} {address!r})")


_connect, _connect_ex, _sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
_getaddrinfo = socket.getaddrinfo


def connect(self, address):
    _check("connect", address)
    return _connect(self, address)


def connect_ex(self, address):
    _check("connect_ex", address)
    return _connect_ex(self, address)


def sendto(self, data, *args):
    _check("sendto", args[-1])
    return _sendto(self, data, *args)


def getaddrinfo(host, *args, **kwargs):
    _check("getaddrinfo", (host,))
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
socket.getaddrinfo = getaddrinfo
'''


def _guarded_env(home: Path, tmp_path: Path) -> tuple[dict[str, str], Path]:
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "sockets.jsonl"
    env = cli_env(home)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        env.pop(var, None)
    env["PYTHONPATH"] = os.pathsep.join([str(guard), str(Path(__file__).resolve().parents[1]),
                                         env.get("PYTHONPATH", "")])
    env["ZAOXIANG_SOCKET_LOG"] = str(log)
    return env, log


def test_guard_catches_a_connection(home: Path, tmp_path: Path) -> None:
    """The control: the same guard does see (and refuse) an attempt to leave the machine."""
    env, log = _guarded_env(home, tmp_path)
    code = ("import socket\n"
            "try:\n    socket.socket().connect(('192.0.2.1', 443))\nexcept OSError as e:\n    print(e)\n"
            "try:\n    socket.getaddrinfo('huggingface.co', 443)\nexcept OSError as e:\n    print(e)\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
            "socket.create_connection(s.getsockname()).close()\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert [c["call"] for c in calls] == ["connect", "getaddrinfo"]
    assert "192.0.2.1" in calls[0]["address"] and "huggingface.co" in calls[1]["address"]


def test_generation_opens_no_socket_beyond_loopback(home: Path, tmp_path: Path) -> None:
    env, log = _guarded_env(home, tmp_path)
    out_dir = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "studio", "generate", "a red star on a white background 白色背景上的红色星星",
         "--model", "demo", "--width", "256", "--height", "256", "--steps", "3", "--seed", "5",
         "--out", str(out_dir), "--json"],
        env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    (record,) = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert Path(record["path"]).is_file()
    attempts = log.read_text().splitlines() if log.exists() else []
    assert attempts == [], attempts
