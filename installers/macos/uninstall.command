#!/usr/bin/env bash
# 造相 Z-Image Studio — macOS uninstaller: removes the app and the environment that install.command
# added. Your images, settings and models stay unless you pass --purge.
set -euo pipefail

purge=0
for arg in "$@"; do
  case "$arg" in
    --purge) purge=1 ;;
    *) printf 'uninstall: unknown option: %s\n' "$arg" >&2; exit 1 ;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -f "$here/installed-files.txt" ]; then
  PREFIX="$here"
else
  PREFIX="${ZAOXIANG_PREFIX:-$HOME/Library/Application Support/zaoxiang-studio}"
fi
[ -d "$PREFIX" ] || { printf 'uninstall: nothing installed at %s\n' "$PREFIX" >&2; exit 1; }

user_dirs=()
if [ "$purge" = 1 ] && [ -x "$PREFIX/venv/bin/python" ]; then
  while IFS= read -r d; do user_dirs+=("$d"); done < <("$PREFIX/venv/bin/python" -c '
from studio.core.paths import get_paths
p = get_paths()
for d in (p.data_dir, p.config_dir, p.cache_dir, p.log_dir):
    print(d)' 2>/dev/null || true)
fi

if [ -f "$PREFIX/installed-files.txt" ]; then
  while IFS= read -r f; do
    [ -n "$f" ] && rm -rf -- "$f"
  done < "$PREFIX/installed-files.txt"
fi
cd /
rm -rf -- "$PREFIX"

if [ "$purge" = 1 ]; then
  for d in ${user_dirs[@]+"${user_dirs[@]}"}; do
    case "$d" in ""|"/"|"$HOME") continue ;; esac
    rm -rf -- "$d"
  done
  echo "Removed 造相 Z-Image Studio and all of its data (images, settings, logs, cache)."
else
  echo "Removed 造相 Z-Image Studio. Your images and settings are kept (run with --purge to delete them)."
fi
