"""``scripts/delivery``: run the executor, the local receiver, and operate destinations
and dead letters.

    scripts/delivery run                          the executor (make executor)
    scripts/delivery receiver [--port 8900]       the demo receiver (signatures checked)
    scripts/delivery status                       disabled destinations
    scripts/delivery enable <destination>         after a 410, once the receiver is back
    scripts/delivery disable <destination> --reason TEXT
    scripts/delivery deadletters list [--destination D] [--reason-code C] [--limit N]
    scripts/delivery deadletters redrive [--destination D] [--reason-code C]
                                         [--offset N ...] [--dry-run] [--max-redrives 3]

A re-drive writes the dead letter's command back to its action topic with the header
``x-delivery-destination`` (only that destination gets it again, and the ledger lets
it start over; one that already got its 2xx is never called again) and a redrive count
one higher. Other readers of the action topic see the command again with the same
``action_id``, which they drop as always.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Producer

from streams import follower
from streams.delivery.control import Control, write_control
from streams.delivery.executor import REDRIVE_HEADER
from streams.delivery.records import DESTINATION_HEADER
from streams.delivery.service import run_forever, topics_of
from streams.errors import ActivationError, BrokerError
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import Settings, load_settings


def read_topic(settings: Settings, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every committed record of ``topic``, as of now."""
    return [(int(m.offset() or 0), _bytes(m.key()), _bytes(m.value()))
            for m in follower.read_topic(settings, topic, purpose="delivery-cli")]


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def dead_letters(settings: Settings, args: argparse.Namespace
                 ) -> list[tuple[int, dict[str, Any]]]:
    serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                      SchemaCatalog.load(settings.schemas_dir))
    out = []
    for offset, _, value in read_topic(settings, topics_of(settings).dead_letters):
        record = serde.decode(value)[1]
        dest = record["original_headers"].get(DESTINATION_HEADER, b"").decode()
        if args.destination and dest != args.destination:
            continue
        if args.reason_code and record["reason_code"] != args.reason_code:
            continue
        if args.offset and offset not in args.offset:
            continue
        out.append((offset, record))
    return out


def summary(offset: int, record: dict[str, Any]) -> dict[str, Any]:
    return {"offset": offset, "destination": record["original_headers"].get(
                DESTINATION_HEADER, b"").decode(),
            "reason_code": record["reason_code"], "reason": record["reason"],
            "source": f"{record['source_topic']}[{record['source_partition']}]",
            "failed_at": record["failed_at"].isoformat(),
            "redrive_count": record["redrive_count"]}


def redrive(settings: Settings, selected: list[tuple[int, dict[str, Any]]], dry_run: bool,
            max_redrives: int) -> int:
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    sent = 0
    for offset, record in selected:
        count = record["redrive_count"] + 1
        if count > max_redrives:
            print(f"skipped offset {offset}: re-driven {count - 1} times already", flush=True)
            continue
        headers = {DESTINATION_HEADER: record["original_headers"].get(DESTINATION_HEADER, b""),
                   REDRIVE_HEADER: str(count).encode()}
        if not dry_run:
            producer.produce(record["source_topic"], record["original_value"],
                             record["original_key"], headers=list(headers.items()))
        sent += 1
    if producer.flush(30) != 0:
        raise BrokerError("re-driven commands not all acknowledged within 30 s")
    print(f"{'would re-drive' if dry_run else 're-drove'} {sent} command(s)")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/delivery", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the delivery executor")
    rec = sub.add_parser("receiver", help="the local demo receiver")
    rec.add_argument("--host", default="127.0.0.1")
    rec.add_argument("--port", type=int, default=8900)
    sub.add_parser("status", help="disabled destinations")
    en = sub.add_parser("enable", help="enable a destination again")
    en.add_argument("destination")
    dis = sub.add_parser("disable", help="stop delivering to a destination")
    dis.add_argument("destination")
    dis.add_argument("--reason", required=True)
    dl = sub.add_parser("deadletters", help="list or re-drive dead letters")
    dl.add_argument("action", choices=["list", "redrive"])
    dl.add_argument("--destination")
    dl.add_argument("--reason-code")
    dl.add_argument("--offset", type=int, action="append")
    dl.add_argument("--limit", type=int, default=1000)
    dl.add_argument("--max-redrives", type=int, default=3)
    dl.add_argument("--dry-run", action="store_true")
    return p


def _run(args: argparse.Namespace, settings: Settings) -> int:
    topics = topics_of(settings)
    if args.command == "run":
        run_forever(settings)
    elif args.command == "receiver":
        from streams.delivery.receiver import serve

        secret = settings.delivery_secrets.get("LOCAL_WEBHOOK_SECRET")
        if secret is None:
            raise ActivationError("set LOCAL_WEBHOOK_SECRET in ACTIVATION_DELIVERY_SECRETS")
        serve(secret.get_secret_value(), args.host, args.port)
    elif args.command == "status":
        control = Control()
        for _, key, value in read_topic(settings, topics.control):
            control.apply(key, value)
        print(json.dumps(control.disabled(), indent=2, default=str))
    elif args.command in ("enable", "disable"):
        write_control(settings, topics.control, args.destination, args.command == "disable",
                      getattr(args, "reason", None) or "enabled by hand", getpass.getuser())
        print(f"{args.destination}: {args.command}d for every executor")
    elif args.action == "list":
        for offset, record in dead_letters(settings, args)[: args.limit]:
            print(json.dumps(summary(offset, record)))
    else:
        return redrive(settings, dead_letters(settings, args)[: args.limit], args.dry_run,
                       args.max_redrives)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(args, load_settings())
    except ActivationError as exc:  # config, broker, registry: say what, no traceback
        print(f"delivery: {exc}", file=sys.stderr)
        return 2
