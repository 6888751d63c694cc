"""Bad input fails early on the command line: one line, status 2, before any worker starts (nothing is
even recorded); stored text is escaped on the terminal; log records never reach it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio.core.paths import get_paths
from studio.core.request import GenerationRequest, ValidationError, validate
from studio.desktop.launcher import local_studio_url
from tests.conftest import cli_env


def zaoxiang(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], env=cli_env(home), capture_output=True,
                          text=True, timeout=timeout, errors="surrogateescape")


def assert_refused_early(r: subprocess.CompletedProcess, fragment: str, elapsed_s: float) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("zaoxiang: ") and fragment in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not get_paths().database.exists(), "a worker or the store started for bad input"
    assert elapsed_s < 30  # a worker start on this machine takes longer than the whole refusal


@pytest.mark.parametrize("args,fragment", [
    (["generate", "a cat \udcff on a mat"], "not valid text: position 6"),  # the byte 0xff, not UTF-8
    (["generate", "cat", "--negative", "blur\udce9"], "Negative prompt is not valid text"),
    (["--port", "70000"], "--port must be from 0 to 65535 (got 70000)"),
    (["--port", "http"], "--port must be a number"),
    (["--host", "999.1.1.1"], "--host must be an IP address"),
    (["--host", "no host!"], "--host must be an IP address"),
])
def test_bad_input_is_refused_before_anything_starts(home: Path, args: list[str], fragment: str) -> None:
    t0 = time.monotonic()
    r = zaoxiang(home, *args)
    assert_refused_early(r, fragment, time.monotonic() - t0)


def test_unwritable_out_is_refused_before_workers_start(home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    t0 = time.monotonic()
    r = zaoxiang(home, "generate", "cat", "--out", str(blocker / "images"))
    assert_refused_early(r, f"cannot write images to --out {blocker / 'images'}: Not a directory",
                         time.monotonic() - t0)
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only file system here")
    try:
        r = zaoxiang(home, "generate", "cat", "--out", str(ro))
        assert_refused_early(r, "Read-only file system", 0)
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_nul_and_lone_surrogates_are_rejected_by_validation() -> None:
    for prompt, fragment in (("cat\x00dog", "NUL character (at position 3)"), ("猫\ud800", "not valid text")):
        with pytest.raises(ValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as info:
            validate(GenerationRequest(prompt=prompt))
        assert info.value.field == "prompt"
    assert validate(GenerationRequest(prompt="猫 😺 cat")).prompt == "猫 😺 cat"  # real Unicode is fine


def test_history_escapes_control_characters(home: Path) -> None:
    from studio.store import Store

    nasty = "red \x1b[2J\x1b]0;pwned\x07 star \x9b31m \u202egnp.exe"
    with Store() as store:
        from tests.store_helpers import split

        req = GenerationRequest(prompt="x", width=256, height=256)
        jobs = split(req, get_paths().gallery_dir)
        # stored as an import would store it: the text of a PNG someone else made, never validated here
        store.record_request(req, jobs, origin="import")
        store._conn.execute("UPDATE requests SET prompt = ?", (nasty,))
        store.mark_failed(jobs[0].job_id, "error", "boom \x1b[31mred")
    r = zaoxiang(home, "history")
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x9b" not in r.stdout and "\u202e" not in r.stdout and "\x07" not in r.stdout
    assert "red \\x1b[2J\\x1b]0;pwned\\x07 star \\x9b31m \\u202egnp.exe" in r.stdout
    assert "boom \\x1b[31mred" in r.stdout
    j = zaoxiang(home, "history", "--json")
    assert "\x1b" not in j.stdout and "\x9b" not in j.stdout and "\u202e" not in j.stdout
    assert json.loads(j.stdout)["prompt"] == nasty  # still the same JSON


def test_instance_file_url_is_checked() -> None:
    for url in ("http://127.0.0.1:7860/", "http://localhost:7861/", "http://[::1]:7860/", "https://127.0.0.1:9/x"):
        assert local_studio_url(url), url
    for url in ("http://evil.example:7860/", "file:///etc/passwd", "http://127.0.0.1/", "javascript:alert(1)",
                "http://127.0.0.1:7860@evil.example/", "http://user:pw@127.0.0.1:7860/", "http://127.0.0.1:99999/",
                "http://127.0.0.1:7860/\n--disable-web-security", "--app=http://127.0.0.1:7860/", None):
        assert not local_studio_url(url), url


def test_log_records_go_to_the_log_file_not_the_terminal(home: Path) -> None:
    """A database that cannot be written logs its tracebacks to the file; the person gets one line."""
    get_paths().database.parent.mkdir(parents=True, exist_ok=True)
    os.makedirs(get_paths().database, exist_ok=True)  # a folder where the database file should be
    r = zaoxiang(home, "history")
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("zaoxiang: Could not open the history database")
    log_text = (get_paths().log_dir / "zaoxiang.log").read_text("utf-8")
    assert "Traceback" in log_text and "zaoxiang history failed" in log_text
