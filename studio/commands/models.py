"""`zaoxiang models list`: every model found, its format, size and completeness."""

from __future__ import annotations

import argparse
import json

from studio.commands import EXIT_OK

NAME = "models"


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(NAME, help="find and manage models")
    msub = m.add_subparsers(dest="models_command", parser_class=type(m))
    ml = msub.add_parser("list", help="show every model found and where")
    ml.add_argument("--model", default=None)
    ml.add_argument("--json", action="store_true")


def run(a: argparse.Namespace) -> int:
    if getattr(a, "models_command", None) in (None, "list"):
        return list_models(getattr(a, "model", None), getattr(a, "json", False))
    raise AssertionError(f"unknown models command {a.models_command}")


def list_models(model: str | None, as_json: bool) -> int:
    from studio.models.discovery import find_models

    models = find_models(explicit=model)
    if as_json:
        print(json.dumps([m.to_dict() for m in models], ensure_ascii=False, indent=2))
        return EXIT_OK
    for i, m in enumerate(models):
        state = "complete" if m.complete else "incomplete: missing " + ", ".join(m.missing)
        mark = "*" if i == 0 else " "
        print(f"{mark} {m.name:28} {m.source:12} {m.format:10} {m.size_bytes / 2**30:7.2f} GiB  {state}")
        print(f"    {m.path}")
    if models and models[0].is_demo:
        print("No Z-Image weights found: the built-in demo model is used. See README: 'Getting the real model'.")
    return EXIT_OK
