"""SIGKILL of the process that owns the pool: its workers notice (death pipe) and exit within seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from tests.conftest import ROOT, cli_env

OWNER = textwrap.dedent("""
    import json, sys, time
    from studio.app import Studio
    from studio.core.request import GenerationRequest

    if __name__ == "__main__":
        studio = Studio(workers="cpu:2")
        rid = studio.submit(GenerationRequest(prompt="a busy pool", width=256, height=256, steps=50,
                                              seed=1, count=4), out_dir=sys.argv[1])
        while not all(r["state"] == "busy" for r in studio.pool_status()):
            time.sleep(0.1)
        print(json.dumps([r["pid"] for r in studio.pool_status()]), flush=True)
        time.sleep(600)
""")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_parent_sigkill_leaves_no_worker(home: Path, tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(OWNER, encoding="utf-8")
    env = cli_env(home)
    env["ZAOXIANG_TEST_WORKER_DELAY"] = "0:0.2,1:0.2"  # keep both workers mid-image when the parent dies
    env["PYTHONPATH"] = str(ROOT)
    owner = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out")], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = owner.stdout.readline()
        assert line, "the owner process printed no worker pids"
        pids = json.loads(line)
        assert len(pids) == 2 and all(not _gone(p) for p in pids)
        assert all(psutil.Process(p).ppid() == owner.pid for p in pids)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        killed = time.monotonic()
        while time.monotonic() - killed < 5 and not all(_gone(p) for p in pids):
            time.sleep(0.05)
        assert all(_gone(p) for p in pids), f"workers outlived their parent: {[p for p in pids if not _gone(p)]}"
    finally:
        if owner.poll() is None:
            owner.kill()
        for pid in locals().get("pids", []):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
