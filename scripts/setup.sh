#!/usr/bin/env bash
# Create .venv (once) and install the studio into it. Usage: scripts/setup.sh [test]
# "test" adds the test extras and the system packages the end-to-end tests need.
# On Linux both modes give the tray its menu: PyGObject (the "tray" extra, built against the system's
# GTK; as root the build packages come from apt). Where it cannot be installed the studio still runs,
# with a menu-less tray icon, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

apt_install() {  # install Debian packages when we may, else say which are missing
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "setup: please install: $* (what needs them is skipped or runs without them)" >&2
    return 1
  fi
}

# torch first, pinned: a bare `torch` can pull a multi-GB build the machine may not need.
if ! python -c "import torch" 2>/dev/null; then
  pip install -q "torch==${ZAOXIANG_TORCH_VERSION:-2.13.0}"
fi
need=()
if [ "$(uname -s)" = Linux ] && ! python -c "import gi" 2>/dev/null; then
  # PyGObject has no Linux wheels: it builds against GObject introspection and cairo.
  pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null || need+=(pkg-config libgirepository1.0-dev libcairo2-dev)
  command -v cc >/dev/null 2>&1 || need+=(gcc)
fi
have_typelib() { compgen -G "/usr/lib*/girepository-1.0/$1.typelib" >/dev/null || compgen -G "/usr/lib/*/girepository-1.0/$1.typelib" >/dev/null; }
if [ "$(uname -s)" = Linux ]; then  # the tray's runtime: GTK 3 and the AppIndicator typelib
  have_typelib Gtk-3.0 || need+=(gir1.2-gtk-3.0)
  have_typelib AyatanaAppIndicator3-0.1 || have_typelib AppIndicator3-0.1 || need+=(gir1.2-ayatanaappindicator3-0.1)
fi
if [ "${1:-}" = "test" ]; then
  pip install -q -e ".[test,cluster]"  # cluster: the Ray tests (tests/test_cluster.py) run in CI too
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
  command -v desktop-file-validate >/dev/null 2>&1 || need+=(desktop-file-utils)
  command -v trayer >/dev/null 2>&1 || need+=(trayer)  # a system tray host for the tray tests
  command -v xdotool >/dev/null 2>&1 || need+=(xdotool)  # clicks the tray icon in the tray tests
  fc-list 2>/dev/null | grep -qi "noto sans cjk" || need+=(fonts-noto-cjk)
  apt_install ${need[@]+"${need[@]}"} || true
else
  pip install -q -e .
  apt_install ${need[@]+"${need[@]}"} || true
fi
if [ "$(uname -s)" = Linux ] && ! python -c "import gi" 2>/dev/null; then
  pip install -q -e ".[tray]" || echo "setup: PyGObject could not be built; the tray icon will have no menu" >&2
fi
# run.sh's stamp: it runs this script again only when pyproject.toml or the installed version changes.
bash scripts/install_stamp.sh > .venv/.zaoxiang-install-stamp
