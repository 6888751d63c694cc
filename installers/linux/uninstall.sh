#!/usr/bin/env bash
# 造相 Z-Image Studio — Linux uninstaller: removes what install.sh added (the environment, the
# `zaoxiang` command, the menu entry and desktop icon). Your images, settings and models stay,
# unless you pass --purge.
#   bash uninstall.sh            keep images and settings
#   bash uninstall.sh --purge    also delete the gallery, database, settings, logs and cache
set -euo pipefail

die() { printf 'uninstall: %s\n' "$*" >&2; exit 1; }

purge=0
for arg in "$@"; do
  case "$arg" in
    --purge) purge=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) die "unknown option: $arg" ;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
if [ -f "$here/installed-files.txt" ]; then
  PREFIX="$here"
else
  PREFIX="${ZAOXIANG_PREFIX:-$DATA_HOME/zaoxiang-studio}"
fi
VENV="$PREFIX/venv"
[ -d "$PREFIX" ] || die "nothing installed at $PREFIX"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<'EOF' 2>/dev/null
import sys
from studio.core.paths import get_paths
from studio.desktop.single_instance import read_instance, pid_alive
info = read_instance(get_paths().runtime_dir)
sys.exit(0 if info is not None and pid_alive(info.pid) else 1)
EOF
then
  die "the studio is running: quit it from its tray icon (or close it) first"
fi

user_dirs=()
if [ "$purge" = 1 ]; then
  if [ -x "$VENV/bin/python" ]; then
    mapfile -t user_dirs < <("$VENV/bin/python" -c '
from studio.core.paths import get_paths
p = get_paths()
for d in (p.data_dir, p.config_dir, p.cache_dir, p.log_dir):
    print(d)' 2>/dev/null || true)
  fi
  if [ ${#user_dirs[@]} -eq 0 ]; then
    user_dirs=("$DATA_HOME/zaoxiang" "${XDG_CONFIG_HOME:-$HOME/.config}/zaoxiang"
               "${XDG_CACHE_HOME:-$HOME/.cache}/zaoxiang" "${XDG_STATE_HOME:-$HOME/.local/state}/zaoxiang")
  fi
fi

if [ -f "$PREFIX/installed-files.txt" ]; then
  while IFS= read -r f; do
    [ -n "$f" ] && rm -f -- "$f"
  done < "$PREFIX/installed-files.txt"
fi
rm -rf -- "$PREFIX"

if [ "$purge" = 1 ]; then
  for d in "${user_dirs[@]}"; do
    case "$d" in
      ""|"/"|"$HOME") continue ;;
    esac
    rm -rf -- "$d"
  done
  echo "Removed 造相 Z-Image Studio and all of its data (images, settings, logs, cache)."
else
  echo "Removed 造相 Z-Image Studio. Your images and settings are kept (run with --purge to delete them)."
fi
