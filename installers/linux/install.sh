#!/usr/bin/env bash
# 造相 Z-Image Studio — Linux installer.
#
# Run it from the studio's folder:   bash installers/linux/install.sh
# (or double-click it and choose "Run" where the file manager offers that).
#
# It creates a virtual environment, installs PyTorch for this machine (the CUDA build when
# `nvidia-smi` answers, the CPU build otherwise) and the studio, and adds "造相 Z-Image Studio" to the
# applications menu (and to the desktop when there is a Desktop folder). Nothing outside
# $XDG_DATA_HOME/zaoxiang-studio, ~/.local/bin/zaoxiang and the shortcuts is touched; your images
# live in the studio's data folder and are never removed by uninstall.sh unless you say --purge.
#
# Options:
#   --system-site-packages   let the environment see system Python packages (e.g. python3-gi, for the
#                            tray icon's menu without building PyGObject; same Python version only)
#   --cpu                    install the CPU build of PyTorch even when a GPU is present
#   --no-desktop-icon        only the applications menu entry, no icon on the desktop
# Environment (for offline machines and tests):
#   PYTHON=python3.12           interpreter that creates the environment (3.10 or newer)
#   ZAOXIANG_PREFIX=DIR         where the environment goes (default $XDG_DATA_HOME/zaoxiang-studio)
#   ZAOXIANG_TORCH_SPEC='torch==2.13.0'   which torch to install (default: torch)
#   ZAOXIANG_TORCH_INDEX=URL    PyTorch wheel index; set it empty to use pip's own configuration
#   ZAOXIANG_PIP_OPTIONS='--find-links /wheels --no-index'   extra options for every pip call
#   ZAOXIANG_USE_UV=0           use venv + pip even when uv is installed
set -euo pipefail

say() { printf '%s\n' "$*"; }
die() { printf 'install: %s\n' "$*" >&2; exit 1; }

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ -f "$SRC/pyproject.toml" ] && [ -d "$SRC/studio" ] || die "run me from inside the studio's folder ($SRC has no pyproject.toml)"
[ -n "${HOME:-}" ] || die "HOME is not set"

DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
PREFIX="${ZAOXIANG_PREFIX:-$DATA_HOME/zaoxiang-studio}"
VENV="$PREFIX/venv"
BIN_DIR="$HOME/.local/bin"
APPS_DIR="$DATA_HOME/applications"
DESKTOP_FILE="$APPS_DIR/zaoxiang-studio.desktop"
MANIFEST="$PREFIX/installed-files.txt"

venv_opts=()
force_cpu=0
desktop_icon=1
for arg in "$@"; do
  case "$arg" in
    --system-site-packages) venv_opts+=(--system-site-packages) ;;
    --cpu) force_cpu=1 ;;
    --no-desktop-icon) desktop_icon=0 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) die "unknown option: $arg (see --help)" ;;
  esac
done

# 1. Python 3.10 or newer.
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || die "Python 3.10 or newer is needed: install it (e.g. sudo apt install python3 python3-venv) and run me again"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "$PY is older than 3.10"
"$PY" -c 'import venv, ensurepip' 2>/dev/null || die "$PY cannot create virtual environments: sudo apt install python3-venv"

# 2. The environment (uv when it is installed: much faster, and it reuses its cache; else venv + pip).
say "造相 Z-Image Studio: installing into $PREFIX"
mkdir -p "$PREFIX"
use_uv=0
if [ "${ZAOXIANG_USE_UV:-auto}" != 0 ] && command -v uv >/dev/null 2>&1; then use_uv=1; fi
if [ ! -x "$VENV/bin/python" ]; then
  if [ "$use_uv" = 1 ]; then
    uv venv --quiet --seed --python "$PY" ${venv_opts[@]+"${venv_opts[@]}"} "$VENV"
  else
    "$PY" -m venv ${venv_opts[@]+"${venv_opts[@]}"} "$VENV"
  fi
fi
read -r -a pip_opts <<< "${ZAOXIANG_PIP_OPTIONS:-}"
pip_install() {
  if [ "$use_uv" = 1 ]; then
    uv pip install --python "$VENV/bin/python" ${pip_opts[@]+"${pip_opts[@]}"} "$@"
  else
    "$VENV/bin/python" -m pip install --disable-pip-version-check ${pip_opts[@]+"${pip_opts[@]}"} "$@"
  fi
}

# 3. PyTorch for this machine.
torch_spec="${ZAOXIANG_TORCH_SPEC:-torch}"
if [ "${ZAOXIANG_TORCH_INDEX+set}" = set ]; then
  torch_index="$ZAOXIANG_TORCH_INDEX"
elif [ "$force_cpu" = 0 ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  cuda="$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\)\.\([0-9]*\).*/\1\2/p' | head -n1)"
  cuda="${cuda:-126}"
  if [ "$cuda" -ge 130 ]; then tag=cu130; elif [ "$cuda" -ge 128 ]; then tag=cu128; else tag=cu126; fi
  torch_index="https://download.pytorch.org/whl/$tag"
  say "NVIDIA driver found (CUDA $cuda): installing the $tag build of PyTorch"
else
  torch_index="https://download.pytorch.org/whl/cpu"
  say "No NVIDIA GPU found: installing the CPU build of PyTorch"
fi
if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  if [ -n "$torch_index" ]; then
    pip_install --index-url "$torch_index" "$torch_spec"
  else
    pip_install "$torch_spec"
  fi
fi

# 4. The studio itself (a normal install, so this folder may be moved or deleted afterwards), with
#    PyGObject for the tray icon's menu (the "tray" extra, built against this system's GTK). Where it
#    cannot be built the studio still runs: its tray icon then opens the studio on a click, without a menu.
gi_ok() { "$VENV/bin/python" -c 'import gi' 2>/dev/null; }
# setuptools copies a stale build/lib into the wheel: a module moved away since (to tools/) would come back
rm -rf "$SRC/build"
if gi_ok || ! pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null || ! pip_install "$SRC[tray]"; then
  pip_install "$SRC"
fi
"$VENV/bin/zaoxiang" --help >/dev/null || die "the studio did not install correctly"
tray_missing=()
gi_ok || tray_missing+=(pkg-config gcc libgirepository1.0-dev libcairo2-dev)
have_typelib() { compgen -G "/usr/lib*/girepository-1.0/$1.typelib" >/dev/null || compgen -G "/usr/lib/*/girepository-1.0/$1.typelib" >/dev/null; }
have_typelib Gtk-3.0 || tray_missing+=(gir1.2-gtk-3.0)
have_typelib AyatanaAppIndicator3-0.1 || have_typelib AppIndicator3-0.1 || tray_missing+=(gir1.2-ayatanaappindicator3-0.1)

# 5. Command, icon and shortcuts; every file outside $PREFIX goes into the manifest for uninstall.
: > "$MANIFEST"
mkdir -p "$BIN_DIR" "$APPS_DIR" "$PREFIX/icons"
ln -sf "$VENV/bin/zaoxiang" "$BIN_DIR/zaoxiang"
echo "$BIN_DIR/zaoxiang" >> "$MANIFEST"
for size in 48 64 128 256 512; do
  cp "$SRC/assets/icon-$size.png" "$PREFIX/icons/"
done
cp "$SRC/installers/linux/uninstall.sh" "$PREFIX/uninstall.sh"
chmod +x "$PREFIX/uninstall.sh"

desktop_quote() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//\`/\\\`}"; s="${s//\$/\\\$}"; printf '"%s"' "$s"; }
cat > "$DESKTOP_FILE" <<EOF
[Desktop Entry]
Type=Application
Version=1.0
Name=造相 Z-Image Studio
Name[zh_CN]=造相 Z-Image Studio
GenericName=Text-to-image studio
GenericName[zh_CN]=文生图工作室
Comment=Make images from text on your own GPUs, offline
Comment[zh_CN]=在你自己的显卡上离线用文字生成图像
Exec=$(desktop_quote "$VENV/bin/zaoxiang")
TryExec=$VENV/bin/zaoxiang
Icon=$PREFIX/icons/icon-256.png
Terminal=false
StartupNotify=false
Categories=Graphics;2DGraphics;RasterGraphics;
Keywords=AI;image;text-to-image;Z-Image;zaoxiang;造相;
EOF
echo "$DESKTOP_FILE" >> "$MANIFEST"
if command -v desktop-file-validate >/dev/null 2>&1; then
  desktop-file-validate "$DESKTOP_FILE" || die "the menu entry did not validate"
fi

if [ "$desktop_icon" = 1 ]; then
  desk="$(command -v xdg-user-dir >/dev/null 2>&1 && xdg-user-dir DESKTOP 2>/dev/null || true)"
  desk="${desk:-$HOME/Desktop}"
  if [ -d "$desk" ] && [ "$desk" != "$HOME" ]; then
    cp "$DESKTOP_FILE" "$desk/zaoxiang-studio.desktop"
    chmod +x "$desk/zaoxiang-studio.desktop"
    command -v gio >/dev/null 2>&1 && gio set "$desk/zaoxiang-studio.desktop" metadata::trusted true 2>/dev/null || true
    echo "$desk/zaoxiang-studio.desktop" >> "$MANIFEST"
  fi
fi

say ""
say "Installed. Start 造相 Z-Image Studio from your applications menu, or run: $BIN_DIR/zaoxiang"
say "安装完成。从应用程序菜单打开「造相 Z-Image Studio」，或运行：$BIN_DIR/zaoxiang"
say "Uninstall: bash $PREFIX/uninstall.sh   (add --purge to delete your images and settings too)"
if [ ${#tray_missing[@]} -gt 0 ]; then
  say ""
  say "For the tray icon's menu, install these and run this installer again: sudo apt install ${tray_missing[*]}"
  say "要让托盘图标有菜单，请安装以下软件包后重新运行安装程序：sudo apt install ${tray_missing[*]}"
  say "(Without them the studio runs as usual; quit it with the window's Quit button or \`zaoxiang stop\`.)"
fi
