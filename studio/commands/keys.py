"""`zaoxiang keys create|list|revoke`: API keys for /v1 and /mcp (see studio/api/keys.py)."""

from __future__ import annotations

import argparse
import json
import sys

from studio.commands import EXIT_OK, EXIT_USAGE

NAME = "keys"


def register(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser(NAME, help="API keys for scripts and agents (create, list, revoke)")
    ops = k.add_subparsers(dest="keys_command", required=True)
    c = ops.add_parser("create", help="make a key; it is shown once, only now")
    c.add_argument("name", nargs="?", default="key", help="what the key is for (e.g. open-webui)")
    ls = ops.add_parser("list", help="the keys (ids and names; never the keys themselves)")
    ls.add_argument("--json", action="store_true", help="one JSON object per key")
    r = ops.add_parser("revoke", help="revoke a key by its id (or its name)")
    r.add_argument("key_id")


def run(a: argparse.Namespace) -> int:
    from studio.api.keys import KeyStore, KeyStoreError
    from studio.core.paths import get_paths

    keys = KeyStore(get_paths().ensure().config_dir)
    if a.keys_command == "create":
        record, plain = keys.create(a.name)
        print(plain)
        print(f"zaoxiang: key {record.id} ({record.name}) created; it is shown only now, so copy it.",
              file=sys.stderr)
    elif a.keys_command == "list":
        for rec in keys.list():
            if a.json:
                print(json.dumps({"id": rec.id, "name": rec.name, "created": rec.created, "revoked": rec.revoked},
                                 ensure_ascii=False))
            else:
                print(f"{rec.id}  {'active ' if rec.active else 'revoked'}  {rec.created}  {rec.name}")
        if not keys.list() and not a.json:
            print("No API keys yet: `zaoxiang keys create NAME` makes one.")
    else:
        try:
            rec = keys.revoke(a.key_id)
        except KeyStoreError as exc:
            print(f"zaoxiang: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"revoked {rec.id} ({rec.name})")
    return EXIT_OK
