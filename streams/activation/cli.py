"""``python -m streams.activation.cli validate [dir]``: check definitions, print the version.

Exit status 0 when valid, 1 with ``file: path: problem`` on stderr otherwise. Publishing
the set (``definitions.snapshot``) to a compacted topic is a later, separate command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from streams.activation.definitions import DefinitionError, load_definitions
from streams.errors import ConfigError
from streams.settings import load_settings


def validate(directory: Path) -> int:
    try:
        definitions = load_definitions(directory)
    except DefinitionError as exc:
        print(f"invalid definitions: {exc}", file=sys.stderr)
        return 1
    print(f"definitions version {definitions.version}: "
          f"{len(definitions.audiences)} audiences ({', '.join(sorted(definitions.audiences))}), "
          f"{len(definitions.journeys)} journeys ({', '.join(sorted(definitions.journeys))})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.activation.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="validate definitions and print the version")
    check.add_argument("directory", nargs="?", type=Path,
                       help="default: ACTIVATION_DEFINITIONS_DIR (./definitions)")
    args = parser.parse_args(argv)
    if args.directory is None:
        try:
            args.directory = load_settings().definitions_dir
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
    return validate(args.directory)


if __name__ == "__main__":
    sys.exit(main())
