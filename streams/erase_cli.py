"""``scripts/erase``: the right to be forgotten, by any identifier.

    scripts/erase --email ada@example.com [--mode suppress_with_delete|delete] [--by NAME]
    scripts/erase --customer-id c-42 | --phone +4930... | --anonymous-id dev-1
    scripts/erase audit [--limit N]        the erasures done (no personal data)

The request goes to the identity stage as an ``erase`` command (streams/core/erasure.py
says what is deleted and what is kept); email and phone are normalised and hashed here,
as the gateway does, so they never travel in clear. The command prints the request id;
the audit record on ``ops.erasures`` carries it once the workers are done.
``suppress_with_delete`` (the default) also keeps the customer from being created
again by later events; ``delete`` does not.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from confluent_kafka import Producer

from streams.core.erasure import MODES, Request
from streams.core.identity import identifier_keys
from streams.core.routing import COMMAND_HEADER, ERASE
from streams.errors import ActivationError, BrokerError
from streams.follower import read_topic
from streams.records import Identifiers
from streams.settings import Settings, load_settings
from streams.topics import ERASURES, IDENTITY_INPUT


def request_for(args: argparse.Namespace) -> Request:
    ids = Identifiers.from_clear(args.customer_id, args.email, args.phone, args.anonymous_id)
    keys = identifier_keys(ids)
    if len(keys) != 1:
        raise SystemExit("give exactly one of --customer-id, --email, --phone, --anonymous-id")
    return Request(uuid.uuid4().hex, keys[0], args.mode, args.by or getpass.getuser(),
                   datetime.now(UTC))


def send(settings: Settings, request: Request) -> None:
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    producer.produce(settings.topic(IDENTITY_INPUT), request.to_json(), b"erase",
                     headers=[(COMMAND_HEADER, ERASE)])
    if producer.flush(30) != 0:
        raise BrokerError("the erasure request was not acknowledged within 30 s")


def audit(settings: Settings, limit: int) -> None:
    for msg in read_topic(settings, settings.topic(ERASURES), purpose="erase-cli")[-limit:]:
        value = msg.value()
        print(value.decode() if isinstance(value, bytes) else value)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/erase", description=__doc__.split("\n")[0])
    p.add_argument("what", nargs="?", choices=["audit"], help="list the audit log instead")
    p.add_argument("--customer-id")
    p.add_argument("--email")
    p.add_argument("--phone")
    p.add_argument("--anonymous-id")
    p.add_argument("--mode", choices=MODES, default="suppress_with_delete")
    p.add_argument("--by", help="recorded as requested_by (default: your user name)")
    p.add_argument("--limit", type=int, default=100)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.what == "audit":
            audit(settings, args.limit)
            return 0
        request = request_for(args)
        send(settings, request)
    except ActivationError as exc:
        print(f"erase: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"request_id": request.request_id, "mode": request.mode,
                      "requested_by": request.requested_by}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
