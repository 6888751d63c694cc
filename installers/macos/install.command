#!/usr/bin/env bash
# 造相 Z-Image Studio — macOS installer. Double-click this file in Finder (it opens in Terminal).
#
# It creates a virtual environment in ~/Library/Application Support/zaoxiang-studio, installs
# PyTorch (the default macOS build, which uses the Apple GPU through MPS) and the studio, and puts
# "造相 Z-Image Studio.app" in ~/Applications: double-click that to start the studio. Your images are
# never removed by uninstall.command unless you pass --purge.
# Environment: PYTHON, ZAOXIANG_TORCH_SPEC, ZAOXIANG_TORCH_INDEX, ZAOXIANG_PIP_OPTIONS, ZAOXIANG_PREFIX.
set -euo pipefail

say() { printf '%s\n' "$*"; }
die() { printf 'install: %s\n' "$*" >&2; printf 'Press Return to close.\n'; read -r _ || true; exit 1; }

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ -f "$SRC/pyproject.toml" ] || die "run me from inside the studio's folder"
PREFIX="${ZAOXIANG_PREFIX:-$HOME/Library/Application Support/zaoxiang-studio}"
VENV="$PREFIX/venv"
APP="$HOME/Applications/造相 Z-Image Studio.app"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || die "Python 3.10 or newer is needed: install it from https://www.python.org/downloads/macos/ and run me again"

say "造相 Z-Image Studio: installing into $PREFIX"
mkdir -p "$PREFIX"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
read -r -a pip_opts <<< "${ZAOXIANG_PIP_OPTIONS:-}"
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check ${pip_opts[@]+"${pip_opts[@]}"} "$@"; }

# PyTorch: on macOS the default wheel is the right one (CPU + Apple GPU via MPS).
if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  if [ -n "${ZAOXIANG_TORCH_INDEX:-}" ]; then
    pip_install --index-url "$ZAOXIANG_TORCH_INDEX" "${ZAOXIANG_TORCH_SPEC:-torch}"
  else
    pip_install "${ZAOXIANG_TORCH_SPEC:-torch}"
  fi
fi
rm -rf "$SRC/build"  # setuptools would copy a stale build/lib into the wheel
pip_install "$SRC"
"$VENV/bin/zaoxiang" --help >/dev/null || die "the studio did not install correctly"

# A minimal application bundle: double-clicking it starts the studio with no Terminal window.
rm -rf "$APP"
mkdir -p "$APP/Contents/MacOS" "$APP/Contents/Resources"
cp "$SRC/assets/icon.icns" "$APP/Contents/Resources/icon.icns"
cat > "$APP/Contents/Info.plist" <<PLIST
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>CFBundleName</key><string>造相 Z-Image Studio</string>
  <key>CFBundleDisplayName</key><string>造相 Z-Image Studio</string>
  <key>CFBundleIdentifier</key><string>io.github.zaoxiang.studio</string>
  <key>CFBundleVersion</key><string>0.1.0</string>
  <key>CFBundlePackageType</key><string>APPL</string>
  <key>CFBundleExecutable</key><string>zaoxiang</string>
  <key>CFBundleIconFile</key><string>icon</string>
  <key>LSMinimumSystemVersion</key><string>11.0</string>
  <key>NSHighResolutionCapable</key><true/>
</dict>
</plist>
PLIST
cat > "$APP/Contents/MacOS/zaoxiang" <<LAUNCH
#!/bin/bash
exec "$VENV/bin/python" -m studio "\$@"
LAUNCH
chmod +x "$APP/Contents/MacOS/zaoxiang"
cp "$SRC/installers/macos/uninstall.command" "$PREFIX/uninstall.command"
chmod +x "$PREFIX/uninstall.command"
printf '%s\n' "$APP" > "$PREFIX/installed-files.txt"

say ""
say "Installed. Double-click 造相 Z-Image Studio in ~/Applications (Finder: Go > Home > Applications)."
say "安装完成。在「应用程序」(~/Applications) 中双击「造相 Z-Image Studio」即可启动。"
say "Uninstall: double-click $PREFIX/uninstall.command (keeps your images)."
open "$HOME/Applications" 2>/dev/null || true
