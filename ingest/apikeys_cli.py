"""``scripts/apikeys create|list|revoke``: manage gateway API keys in the key topic.

``create`` prints the secret once; only its HMAC is stored. ``revoke`` reaches
every running gateway within a second (they tail the topic).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from ingest.auth import EVENTS_WRITE, SCOPES, KeyRecord, KeyTable, hash_key, new_key
from ingest.keystore import KeyWriter, load_once
from streams.errors import ActivationError
from streams.settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/apikeys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--scope", action="append", choices=SCOPES, dest="scopes",
                        help=f"repeatable; default {EVENTS_WRITE}")
    sub.add_parser("list", help="list keys (ids, names, scopes, revoked)")
    revoke = sub.add_parser("revoke", help="revoke a key on every gateway")
    revoke.add_argument("key_id")
    return parser


def run(argv: list[str], settings: Settings) -> int:
    args = _parser().parse_args(argv)
    pepper = settings.api_key_pepper.get_secret_value()
    if args.command == "create":
        key_id, key = new_key()
        scopes = tuple(dict.fromkeys(args.scopes or [EVENTS_WRITE]))
        KeyWriter(settings).put(KeyRecord(key_id, hash_key(key, pepper), scopes, args.name))
        print(f"key id: {key_id}\nscopes: {', '.join(scopes)}\nsecret (shown once): {key}")
        return 0
    table = KeyTable(pepper)
    load_once(settings, table)
    if args.command == "list":
        print(f"{'KEY ID':<14} {'STATE':<8} {'CREATED':<33} {'SCOPES':<36} NAME")
        for r in table.records():
            state = "revoked" if r.revoked else "active"
            print(f"{r.key_id:<14} {state:<8} {r.created_at:<33} {','.join(r.scopes):<36} {r.name}")
        return 0
    record = table.get(args.key_id)
    if record is None:
        print(f"no key {args.key_id!r}", file=sys.stderr)
        return 1
    KeyWriter(settings).put(replace(record, revoked=True))
    print(f"revoked {args.key_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv, load_settings())
    except ActivationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
