"""Settings checked before saving and when read, the password kept as a hash, the guard's rules.

Real files in a real ZAOXIANG_HOME; the window's HTTP side is in tests/e2e/test_security_e2e.py.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from studio.core import settings_check
from studio.core.passwords import hash_password, is_password_hash, verify_password
from studio.core.paths import get_paths
from studio.core.settings import Settings, SettingsError, load_settings, save_settings
from studio.core.settings_check import (
    API_LIMITS,
    api_limit_values,
    is_system_folder,
    valid_host,
    workers_problem,
)
from studio.ui.guard import LoginThrottle, host_of


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_password_hash_is_salted_and_verifies():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and is_password_hash(first) and "correct horse" not in first
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct hors", first)
    assert not verify_password("correct horse", "correct horse")  # a plain value is no hash
    assert not verify_password("x", "scrypt$1$1$1$!!$!!")


@pytest.mark.parametrize("folder", ["/", "/etc", "/etc/cron.d", "/proc", "/proc/1/forbidden", "/sys", "/dev",
                                    "/usr", "/usr/share/images", "/bin", "/boot", "/var", "/tmp", "~",
                                    "C:\\Windows", "C:\\Windows\\System32", "C:\\", "c:/program files/x"])
def test_system_folders_are_never_output_folders(folder):
    assert is_system_folder(folder)


def test_own_folders_are_output_folders(tmp_path):
    assert not is_system_folder(tmp_path / "pictures")
    assert not is_system_folder(Path.home() / "Pictures" / "zaoxiang")
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    assert is_system_folder(link)  # a symlink is judged by where it leads
    config = tmp_path / "home" / "config"
    assert is_system_folder(tmp_path / "home", protected=(config,))  # would hold the settings file


def test_values_checked_one_message_per_field_in_both_languages(home):
    values = {"workers": "gpu:banana", "model": "/nonexistent/model", "output_dir": "/proc/1/forbidden",
              "host": "not a host!!", "port": 70000, "memory_profile": "huge", "language": "fr"}
    problems = {p.field: p for p in settings_check.settings_problems(values, saving=True)}
    assert set(problems) == set(values)
    for problem in problems.values():
        zh, en = problem.message("zh"), problem.message("en")
        assert zh and en and zh != en
    assert "gpu:banana" in problems["workers"].message("en")
    assert workers_problem("cpu:2") is None and workers_problem("cuda:0,cuda:1", gpu_count=2) is None
    assert workers_problem("cuda:2", gpu_count=2).key == "set.bad.no_gpu"
    assert workers_problem("cuda:0,gpu:0").key == "set.bad.gpu_twice"
    assert not valid_host("999.1.1.1") and valid_host("192.168.1.5") and valid_host("studio.local")
    nul = settings_check.settings_problems({"auth_user": "me\x00"}, saving=True)
    assert [p.key for p in nul] == ["set.bad.text"]


def test_invalid_settings_are_not_saved(home):
    paths = get_paths()
    save_settings(Settings(memory_profile="16gb"), paths)
    before = paths.settings_file.read_bytes()
    for bad in (dict(output_dir="/etc"), dict(workers="gpu:banana"), dict(host="not a host!!"), dict(port=0),
                dict(model="/nonexistent/model"), dict(host="0.0.0.0")):
        with pytest.raises(SettingsError) as caught:
            save_settings(Settings(memory_profile="12gb", **bad), paths)
        assert caught.value.problems and str(caught.value)
        assert paths.settings_file.read_bytes() == before, bad


def test_studio_update_settings_refuses_and_keeps_its_settings(home):
    from studio.app import Studio

    studio = Studio(workers="cpu:1")
    try:
        with pytest.raises(SettingsError):
            studio.update_settings(output_dir="/etc")
        assert studio.settings.output_dir == "" and load_settings(studio.paths).output_dir == ""
    finally:
        studio.close()


def test_settings_file_is_private_and_holds_only_a_hash(home):
    paths = get_paths()
    save_settings(Settings(auth_user="me", auth_password="s3cret-Pass"), paths)
    text = paths.settings_file.read_text()
    assert _mode(paths.settings_file) == 0o600
    assert "s3cret-Pass" not in text
    stored = tomllib.loads(text)["auth_password"]
    assert is_password_hash(stored) and verify_password("s3cret-Pass", stored)


def test_old_plain_password_is_hashed_on_first_load(home):
    paths = get_paths()
    paths.settings_file.write_text('auth_user = "me"\nauth_password = "plain-old"\nport = 7861\n')
    os.chmod(paths.settings_file, 0o644)
    loaded = load_settings(paths)
    assert loaded.port == 7861 and verify_password("plain-old", loaded.auth_password)
    text = paths.settings_file.read_text()
    assert "plain-old" not in text and "scrypt$" in text and _mode(paths.settings_file) == 0o600


def test_env_password_still_works_and_is_hashed(home, monkeypatch):
    monkeypatch.setenv("ZAOXIANG_AUTH_PASSWORD", "from-env")
    loaded = load_settings(get_paths())
    assert loaded.auth_password != "from-env" and verify_password("from-env", loaded.auth_password)


@pytest.mark.parametrize("content", [b"\x00\xff\xfe garbage \x9c\x80", b"workers = [unclosed\n",
                                     b'workers = 5\nport = 7861\n', b'fast_path = "yes"\n', b"port = 7.5\n"])
def test_damaged_settings_file_is_moved_aside_and_defaults_used(home, content):
    paths = get_paths()
    paths.settings_file.write_bytes(content)
    notices: list[str] = []
    loaded = load_settings(paths, notices)
    assert loaded == Settings()
    aside = list(paths.config_dir.glob("settings.toml.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert not paths.settings_file.exists()
    assert len(notices) == 1 and str(paths.settings_file) in notices[0] and aside[0].name in notices[0]
    assert load_settings(paths) == Settings()  # and the next start is quiet


def test_bad_value_in_settings_file_falls_back_to_its_default(home, monkeypatch):
    monkeypatch.setenv("ZAOXIANG_LANGUAGE", "zh")
    paths = get_paths()
    paths.settings_file.write_text('output_dir = "/etc"\nmemory_profile = "16gb"\nworkers = "gpu:banana"\n')
    notices: list[str] = []
    loaded = load_settings(paths, notices)
    assert (loaded.output_dir, loaded.memory_profile, loaded.workers) == ("", "16gb", "auto")
    assert len(notices) == 2 and all(str(paths.settings_file) in n for n in notices)
    assert "系统文件夹" in notices[0] or "系统文件夹" in notices[1]
    assert paths.settings_file.exists()  # a readable file is kept: only the bad values are ignored


def test_login_throttle_doubles_the_wait_after_free_tries():
    now = [0.0]
    throttle = LoginThrottle(free_tries=3, max_wait_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.wait_s("1.2.3.4") == 0
        throttle.failed("1.2.3.4")
    assert throttle.wait_s("1.2.3.4") == 0  # three free tries
    waits = []
    for _ in range(8):
        throttle.failed("1.2.3.4")
        waits.append(throttle.wait_s("1.2.3.4"))
        now[0] += waits[-1]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    assert throttle.wait_s("5.6.7.8") == 0  # per address
    throttle.succeeded("1.2.3.4")
    assert throttle.wait_s("1.2.3.4") == 0


def test_host_header_parsing():
    assert host_of("127.0.0.1:7860") == "127.0.0.1" and host_of("[::1]:7860") == "::1"
    assert host_of("LocalHost.") == "localhost" and host_of("evil.example:7901") == "evil.example"


def test_instance_file_is_private(tmp_path):
    from studio.desktop.single_instance import INFO_NAME, InstanceLock

    lock = InstanceLock(tmp_path / "run")
    assert lock.acquire()
    try:
        lock.publish("http://127.0.0.1:7860/", "the-run-secret")
        assert _mode(tmp_path / "run" / INFO_NAME) == 0o600
    finally:
        lock.release()


def test_the_api_limits_are_whole_numbers_in_range_each_said_in_one_line():
    """Settings → API's three boxes (core/settings_check.py): good values become whole numbers; each bad one
    is one line in both languages naming its range, and then nothing is saved."""
    good, problems = api_limit_values({"rate_per_min": 0, "queue_limit": 12.0, "uploads_mb": "2048"})
    assert (good, problems) == ({"rate_per_min": 0, "queue_limit": 12, "uploads_mb": 2048}, [])
    for name, (low, high, _key) in API_LIMITS.items():
        for bad in (None, "", "many", 2.5, low - 1, high + 1, True):
            values, problems = api_limit_values({name: bad})
            assert values == {} and [p.field for p in problems] == [name], (name, bad)
            zh, en = problems[0].message("zh"), problems[0].message("en")
            assert f"{low}" in en and f"{high}" in en and f"{high}" in zh and "\n" not in en + zh
            assert zh != en
