#!/usr/bin/env bash
# What the studio's install in .venv depends on: pyproject.toml and the installed version (its
# dist-info). scripts/setup.sh records it; scripts/run.sh reinstalls only when it changes.
cd "$(dirname "$0")/.."
{ cat pyproject.toml; ls -d .venv/lib/python*/site-packages/zaoxiang_studio-*.dist-info 2>/dev/null; } | cksum
