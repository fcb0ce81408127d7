"""``scripts/identity``: move a stopped, drained deployment between identity layouts.

    scripts/identity migrate --to N [--dry-run]   re-slot the identity state onto N slots
    scripts/identity migrate --to N --check       after a migration: counts and invariant
    scripts/identity migrate --to N --check-drained   is the deployment drained?

Run it with the deployment's current configuration (``ACTIVATION_IDENTITY_PARTITIONS``
is the layout migrated from). Exit status: 0 done or passed, 1 a check found problems,
2 refused or failed (the message says what to do). Runbook:
docs/partitioned-identity.md, 7.1; what is written: streams/identity_migrate.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from streams.core.identity_migrate import MigrationError
from streams.errors import ActivationError
from streams.identity_drain import drain_problems
from streams.identity_migrate import check, migrate
from streams.settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/identity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="move the identity state to another slot count")
    mig.add_argument("--to", type=int, required=True, help="the new slot count (1: single)")
    mode = mig.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="verify a migration done")
    mode.add_argument("--check-drained", action="store_true",
                      help="verify the workers committed the internal topics to their end")
    mode.add_argument("--dry-run", action="store_true", help="read and plan, write nothing")
    return parser


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.to < 1:
        raise MigrationError("--to must be at least 1")
    if args.check_drained:
        problems = drain_problems(settings)
        print("\n".join(problems) or "drained: the internal topics are committed to their end")
        return 1 if problems else 0
    if args.check:
        problems = check(settings, args.to)
        print("\n".join(problems) or "check passed")
        return 1 if problems else 0
    migrate(settings, args.to, args.dry_run)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args, load_settings())
    except ActivationError as exc:
        print(f"scripts/identity: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

