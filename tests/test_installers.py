"""The installers. Linux: run for real in a temporary HOME (uv with this machine's cache, so it takes
seconds once warm), then uninstall with and without --purge. Windows and macOS: checked without
running them, since neither PowerShell nor macOS is available here: `bash -n` and the app bundle's
Info.plist parsed for the .command files; for the .ps1/.vbs/.bat files a structural check in Python
(balanced brackets and quotes outside strings and comments, and the commands each script must run).
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINUX = ROOT / "installers" / "linux"
WINDOWS = ROOT / "installers" / "windows"
MACOS = ROOT / "installers" / "macos"


def _installer_env(home: Path) -> dict[str, str]:
    """A clean HOME; this machine's uv cache, certificates and local wheels so no big download repeats."""
    import torch

    real_home = Path(os.environ.get("HOME", str(Path.home())))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ZAOXIANG_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "xdg-data"),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
               UV_CACHE_DIR=os.environ.get("UV_CACHE_DIR", str(real_home / ".cache" / "uv")),
               PYTHON=getattr(sys, "_base_executable", sys.executable),
               ZAOXIANG_TORCH_SPEC=f"torch=={torch.__version__.split('+')[0]}", ZAOXIANG_TORCH_INDEX="")
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT"):
        if os.environ.get(name) and "SSL_CERT_FILE" not in os.environ:
            env["SSL_CERT_FILE"] = os.environ[name]
    if not env.get("SSL_CERT_FILE") and Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        env["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
    if os.environ.get("PIP_FIND_LINKS"):
        env["UV_FIND_LINKS"] = os.environ["PIP_FIND_LINKS"]
    return env


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux installer")
def test_linux_install_in_temp_home_then_uninstall(tmp_path: Path) -> None:
    if shutil.which("uv", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])) is None:
        pytest.skip("uv is not installed (it is in the test extras; a pip install takes minutes)")
    home = tmp_path / "home"
    (home / "Desktop").mkdir(parents=True)
    env = _installer_env(home)
    data = home / "xdg-data"
    prefix = data / "zaoxiang-studio"

    def install() -> None:
        p = subprocess.run(["bash", str(LINUX / "install.sh")], env=env, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "Installed." in p.stdout

    install()
    zaoxiang = home / ".local" / "bin" / "zaoxiang"
    desktop = data / "applications" / "zaoxiang-studio.desktop"
    assert zaoxiang.is_symlink() and os.access(zaoxiang, os.X_OK)
    assert desktop.is_file() and (home / "Desktop" / "zaoxiang-studio.desktop").is_file()

    # A working zaoxiang: its help, and its own Python sees torch, the studio and the installed icons.
    run_env = dict(env, ZAOXIANG_HOME=str(tmp_path / "studio-home"))
    p = subprocess.run([str(zaoxiang), "--help"], env=run_env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "--headless" in p.stdout and "generate" in p.stdout, p.stderr
    probe = ("import torch, diffusers, gradio, psutil, studio.desktop.launcher, studio.desktop.tray; "
             "from studio.core.assets import assets_dir; print(assets_dir())")
    p = subprocess.run([str(prefix / "venv" / "bin" / "python"), "-c", probe], env=run_env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()) == prefix / "venv" / "share" / "zaoxiang" / "assets"
    # The developers' tools (training, evaluation, GPU benches) are not installed.
    probe = ("import importlib.util as u; "
             "print(u.find_spec('tools'), u.find_spec('studio.models.train_demo'), u.find_spec('studio.models.shapes'))")
    p = subprocess.run([str(prefix / "venv" / "bin" / "python"), "-c", probe], env=run_env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.split()[:2] == ["None", "None"] and "shapes" in p.stdout, p.stderr
    # The tray's menu: PyGObject built into the environment wherever this system can build it.
    can_build = shutil.which("pkg-config") is not None and subprocess.run(
        ["pkg-config", "--exists", "gobject-introspection-1.0", "cairo"]).returncode == 0
    if can_build:
        p = subprocess.run([str(prefix / "venv" / "bin" / "python"), "-c",
                            "import gi; gi.require_version('Gtk', '3.0'); print(gi.__version__)"],
                           env=run_env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr

    # The menu entry is valid and points at real files.
    text = desktop.read_text(encoding="utf-8")
    if shutil.which("desktop-file-validate"):
        v = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True, text=True)
        assert v.returncode == 0 and not v.stdout.strip(), v.stdout
    exec_path = re.search(r'^Exec="?([^"\n]+)"?$', text, re.M).group(1)
    icon_path = re.search(r"^Icon=(.+)$", text, re.M).group(1)
    assert os.access(exec_path, os.X_OK) and Path(icon_path).is_file()
    assert "Name[zh_CN]=造相 Z-Image Studio" in text

    # Uninstall keeps the images; --purge (after a second install) removes them.
    gallery = data / "zaoxiang" / "gallery"
    gallery.mkdir(parents=True)
    (gallery / "keep.png").write_bytes(b"png")
    p = subprocess.run(["bash", str(prefix / "uninstall.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert not prefix.exists() and not zaoxiang.exists() and not zaoxiang.is_symlink()
    assert not desktop.exists() and not (home / "Desktop" / "zaoxiang-studio.desktop").exists()
    assert (gallery / "keep.png").is_file()

    install()
    p = subprocess.run(["bash", str(prefix / "uninstall.sh"), "--purge"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert not prefix.exists() and not (data / "zaoxiang").exists()


def test_shell_installers_parse() -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    for script in (LINUX / "install.sh", LINUX / "uninstall.sh", MACOS / "install.command",
                   MACOS / "uninstall.command"):
        p = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert p.returncode == 0, f"{script.name}: {p.stderr}"
        assert os.access(script, os.X_OK), f"{script.name} must be executable (double-click)"


def test_macos_app_bundle_plist_is_valid() -> None:
    text = (MACOS / "install.command").read_text(encoding="utf-8")
    plist = re.search(r"<<PLIST\n(.*?)\nPLIST\n", text, re.S).group(1)
    info = plistlib.loads(plist.encode("utf-8"))
    assert info["CFBundleExecutable"] == "zaoxiang" and info["CFBundleIconFile"] == "icon"
    assert info["CFBundlePackageType"] == "APPL" and "造相" in info["CFBundleName"]
    assert "icon.icns" in text and "-m studio" in text and "-m venv" in text


# ---------------------------------------------------------------- Windows, without PowerShell

def powershell_structure_errors(source: str) -> list[str]:
    """Unbalanced (), {}, [] or unterminated strings/here-strings/comments in PowerShell source.

    Understands '...' (with '' inside), "..." (with `-escapes), @'...'@ / @"..."@ here-strings,
    # line comments and <# #> block comments. Not a parser: it catches the typos that break one.
    """
    errors: list[str] = []
    stack: list[tuple[str, int]] = []
    pairs = {")": "(", "}": "{", "]": "["}
    i, line, n = 0, 1, len(source)
    while i < n:
        c = source[i]
        if c == "\n":
            line += 1
        if source.startswith("<#", i):
            end = source.find("#>", i + 2)
            if end < 0:
                return errors + [f"line {line}: unterminated <# comment"]
            line += source.count("\n", i, end)
            i = end + 2
            continue
        if c == "#":
            end = source.find("\n", i)
            i = n if end < 0 else end
            continue
        if source.startswith(("@'", '@"'), i) and source[i + 2:i + 3] in ("\n", "\r"):
            close = "\n" + source[i + 1] + "@"
            end = source.find(close, i + 2)
            if end < 0:
                return errors + [f"line {line}: unterminated here-string"]
            line += source.count("\n", i, end + 1)
            i = end + len(close)
            continue
        if c in ("'", '"'):
            j, start = i + 1, line
            while True:
                if j >= n:
                    return errors + [f"line {start}: unterminated {c}string"]
                if c == '"' and source[j] == "`":
                    j += 2
                    continue
                if source[j] == c:
                    if j + 1 < n and source[j + 1] == c:  # doubled quote inside the string
                        j += 2
                        continue
                    break
                j += 1
            line += source.count("\n", i, j)
            i = j + 1
            continue
        if c in "({[":
            stack.append((c, line))
        elif c in ")}]":
            if not stack or stack[-1][0] != pairs[c]:
                errors.append(f"line {line}: unexpected {c}")
            else:
                stack.pop()
        i += 1
    errors += [f"line {ln}: unclosed {ch}" for ch, ln in stack]
    return errors


def test_powershell_checker_catches_breakage() -> None:
    good = "param([switch]$X)\n$a = @{ k = 'it''s' }\nif ($a) { Write-Host \"ok `\" }\" } # }\n"
    assert powershell_structure_errors(good) == []
    assert powershell_structure_errors("if ($a) { Write-Host 'x' \n") != []
    assert powershell_structure_errors("Write-Host \"oops\n") != []
    assert powershell_structure_errors("$a = (1 + 2]\n") != []


@pytest.mark.parametrize("name,required", [
    ("install.ps1", ["param(", "-m venv", "pip install", "nvidia-smi", "download.pytorch.org/whl/",
                     "ZAOXIANG_TORCH_SPEC", "CreateShortcut", "wscript.exe", "zaoxiang.vbs", "icon.ico",
                     "installed-files.txt"]),
    ("uninstall.ps1", ["param(", "[switch]$Purge", "installed-files.txt", "Remove-Item", "get_paths"]),
])
def test_powershell_scripts_structure(name: str, required: list[str]) -> None:
    raw = (WINDOWS / name).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "PowerShell 5 needs a UTF-8 BOM to read the Chinese text"
    source = raw.decode("utf-8-sig")
    assert powershell_structure_errors(source) == []
    for fragment in required:
        assert fragment in source, f"{name} lacks {fragment!r}"
    first_code = next(ln for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))
    assert first_code.startswith("param("), "param() must be the first statement"


def test_windows_launchers() -> None:
    vbs = (WINDOWS / "zaoxiang.vbs").read_text(encoding="ascii")  # WSH reads ANSI: keep it ASCII
    code = [ln.split("'", 1)[0] if not ln.lstrip().startswith("'") else "" for ln in vbs.splitlines()]
    assert all(ln.count('"') % 2 == 0 for ln in code), "unbalanced quote in zaoxiang.vbs"
    opens = sum(1 for ln in code if re.match(r"\s*If\b.*\bThen\s*$", ln))
    assert opens == sum(1 for ln in code if re.match(r"\s*End If\b", ln))
    assert "pythonw.exe" in vbs and "-m studio" in vbs and ", 0, False" in vbs  # 0: no console window
    for bat in ("install.bat", "uninstall.bat"):
        text = (WINDOWS / bat).read_text(encoding="ascii")
        assert "-ExecutionPolicy Bypass" in text and "%~dp0" in text and bat.replace(".bat", ".ps1") in text
