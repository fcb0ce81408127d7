"""``python -m streams.activation.cli`` (``scripts/definitions``): validate and publish definitions.

    validate [dir]                 check the definitions, print their version
    publish [dir] [--author NAME]  validate, then publish to the definitions topic (a no-op if
                                   that version is already in force); every worker follows it
    show                           the version in force: sequence, who, when, audiences, journeys
    history                        every publication, oldest first
    publish --rollout-percent N | --rollout-audience ID   staged: live for a cohort first
    promote | rollback             end a staged rollout: the candidate or the stable version
                                   for every profile (each a new publication)
    approve ID --api-key K | proposals   with ACTIVATION_DEFINITIONS_REQUIRE_APPROVAL,
                                   publish writes a proposal a second key must approve
    diff [A] [B]                   what changes from A to B: a published sequence number or
                                   a directory (default: the version in force -> dir)

``dir`` defaults to ACTIVATION_DEFINITIONS_DIR (./definitions); Kafka settings come from the
ACTIVATION_* environment. Exit status: 0 ok; 1 invalid definitions (``invalid definitions:
file: path: problem`` on stderr, nothing published, the definitions in force stay); 2 bad
settings or Kafka unavailable.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

from ingest.auth import APPROVE_DEFINITIONS, KeyTable, Principal
from ingest.errors import AuthError
from ingest.keystore import load_once
from streams.activation.approval import check_approver, propose
from streams.activation.definitions import DefinitionError, DefinitionSet, load_definitions
from streams.activation.diff import diff
from streams.activation.distribution import (
    Published,
    publish_set,
    read_history,
    read_proposals,
    write_record,
)
from streams.activation.rollout import Rollout
from streams.errors import ActivationError
from streams.settings import Settings, load_settings


def validate(directory: Path) -> int:
    try:
        definitions = load_definitions(directory)
    except DefinitionError as exc:
        print(f"invalid definitions: {exc}", file=sys.stderr)
        return 1
    print(f"definitions version {definitions.version}: "
          f"{len(definitions.audiences)} audiences ({', '.join(sorted(definitions.audiences))}), "
          f"{len(definitions.journeys)} journeys ({', '.join(sorted(definitions.journeys))}), "
          f"{len(definitions.destinations)} destinations "
          f"({', '.join(sorted(definitions.destinations))}), "
          f"{len(definitions.schedules)} schedules ({', '.join(sorted(definitions.schedules))}), "
          f"channels {', '.join(sorted(definitions.all_channels))}"
          + ("" if definitions.channels else " (built-in)"))
    return 0


def default_author() -> str:
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError):  # no login name in the environment nor the password database
        return "unknown"


def _principal(settings: Settings, key: str | None) -> Principal:
    """The API key's owner (the key store as the gateways see it)."""
    if not key:
        raise DefinitionError("approval is required: give your API key with --api-key")
    table = KeyTable(settings.api_key_pepper.get_secret_value())
    load_once(settings, table)
    try:
        return table.authenticate(key)
    except AuthError as exc:
        raise DefinitionError(f"--api-key: {exc}") from exc


def _propose(settings: Settings, definitions: DefinitionSet, author: str, key: str | None,
             staged: Rollout | None) -> int:
    principal = _principal(settings, key)
    proposal = propose(definitions, author, principal.key_id, staged)
    write_record(settings, *proposal.encode())
    print(f"proposal {proposal.proposal_id} (version {definitions.version}) awaits approval: "
          f"scripts/definitions approve {proposal.proposal_id} --api-key <another key>")
    return 0


def _approve(settings: Settings, proposal_id: str, key: str | None, author: str) -> int:
    proposal = next((p for p in read_proposals(settings) if p.proposal_id == proposal_id), None)
    if proposal is None:
        raise DefinitionError(f"no proposal {proposal_id} awaits approval")
    principal = _principal(settings, key)
    check_approver(proposal, principal.key_id, principal.scopes, APPROVE_DEFINITIONS)
    by = f"{proposal.proposed_by}, approved by {author} (key {principal.key_id})"
    new, _ = publish_set(settings, proposal.definitions, by, rollout=proposal.rollout,
                         force=True)
    write_record(settings, proposal.encode()[0], None)  # a tombstone: listed no more
    print(f"approved: version {new.version} published as sequence {new.sequence}")
    return 0


def _publish(settings: Settings, directory: Path, author: str,
             rollout: tuple[float | None, str | None] = (None, None),
             key: str | None = None) -> int:
    definitions = load_definitions(directory)
    staged = None
    if rollout != (None, None):
        history = read_history(settings)
        if not history:
            raise DefinitionError("nothing in force yet: a first version cannot be staged")
        base = history[-1].rollout.stable_sequence if history[-1].rollout else \
            history[-1].sequence
        staged = Rollout(base, *rollout)
    if settings.definitions_require_approval:
        return _propose(settings, definitions, author, key, staged)
    in_force, written = publish_set(settings, definitions, author, rollout=staged)
    if written:
        how = f" ({staged.describe()})" if staged else ""
        print(f"published definitions version {in_force.version} as sequence "
              f"{in_force.sequence}{how}")
    else:
        print(f"unchanged: version {in_force.version} is already in force "
              f"(sequence {in_force.sequence})")
    return 0


def _end_rollout(settings: Settings, author: str, promote: bool) -> int:
    """Promote the staged version to everyone, or roll back to the stable one: either
    way a new publication, without a rollout."""
    history = read_history(settings)
    current = history[-1] if history else None
    if current is None or current.rollout is None:
        raise DefinitionError("no staged rollout in force")
    stable = next((p for p in history if p.sequence == current.rollout.stable_sequence), None)
    if stable is None:
        raise DefinitionError(f"the stable sequence {current.rollout.stable_sequence} "
                              "is not in the history")
    chosen = current if promote else stable
    new, _ = publish_set(settings, chosen.definitions, author, force=True)
    print(f"{'promoted' if promote else 'rolled back to'} version {chosen.version}: "
          f"sequence {new.sequence}, for every profile")
    return 0


def _line(p: Published) -> str:
    return (f"sequence {p.sequence}  version {p.version}  "
            f"{p.published_at.isoformat(timespec='seconds')}  by {p.published_by}"
            + (f"  ({p.rollout.describe()})" if p.rollout else ""))


def _show(settings: Settings) -> int:
    history = read_history(settings)
    if not history:
        print("no definitions published yet")
        return 0
    p = history[-1]
    defs = p.definitions
    print(f"version {p.version} in force: sequence {p.sequence}, published by "
          f"{p.published_by} at {p.published_at.isoformat(timespec='seconds')}"
          + (f", {p.rollout.describe()}" if p.rollout else ""))
    print(f"audiences ({len(defs.audiences)}): {', '.join(sorted(defs.audiences)) or '-'}")
    print(f"journeys ({len(defs.journeys)}): {', '.join(sorted(defs.journeys)) or '-'}")
    print(f"destinations ({len(defs.destinations)}): "
          f"{', '.join(sorted(defs.destinations)) or '-'}")
    print(f"schedules ({len(defs.schedules)}): {', '.join(sorted(defs.schedules)) or '-'}")
    print(f"channels ({len(defs.all_channels)}): "
          + ", ".join(f"{c.id} -> {c.topic_name}" for _, c in sorted(defs.all_channels.items())))
    return 0


def _history(settings: Settings) -> int:
    history = read_history(settings)
    if not history:
        print("no definitions published yet")
    for p in history:
        print(_line(p) + ("  (in force)" if p is history[-1] else ""))
    return 0


def _resolve(settings: Settings, ref: str | None, history: list[Published]
             ) -> DefinitionSet:
    """A sequence number of the history, a directory, or (None) the version in force."""
    if ref is None:
        if not history:
            raise DefinitionError("no definitions published yet: give two directories")
        return history[-1].definitions
    if ref.isdigit():
        for p in history:
            if p.sequence == int(ref):
                return p.definitions
        raise DefinitionError(f"no publication with sequence {ref}")
    return load_definitions(Path(ref))


def _diff(settings: Settings, old: str | None, new: str | None) -> int:
    needs_history = old is None or old.isdigit() or (new is not None and new.isdigit())
    history = read_history(settings) if needs_history else []
    before = _resolve(settings, old, history)
    after = _resolve(settings, new or str(settings.definitions_dir), history)
    lines = diff(before, after)
    print("\n".join(lines) if lines else f"no change (version {before.version})")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m streams.activation.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    dir_help = "default: ACTIVATION_DEFINITIONS_DIR (./definitions)"
    check = commands.add_parser("validate", help="validate definitions and print the version")
    check.add_argument("directory", nargs="?", type=Path, help=dir_help)
    pub = commands.add_parser("publish", help="validate and publish to the definitions topic")
    pub.add_argument("directory", nargs="?", type=Path, help=dir_help)
    pub.add_argument("--author", help="recorded as published_by (default: your user name)")
    stage = pub.add_mutually_exclusive_group()
    stage.add_argument("--rollout-percent", type=float,
                       help="live for this share of profiles first (the rest keep the "
                            "version in force)")
    stage.add_argument("--rollout-audience", help="live for this audience's members first")
    pub.add_argument("--api-key", help="your API key (when approval is required)")
    app = commands.add_parser("approve", help="approve someone else's proposal")
    app.add_argument("proposal_id")
    app.add_argument("--api-key", required=True, help="a key with definitions:approve")
    app.add_argument("--author", help="your name, recorded with the publication")
    commands.add_parser("proposals", help="proposals awaiting approval")
    for name, what in (("promote", "the staged version, for every profile"),
                       ("rollback", "back to the version before the staged one")):
        end = commands.add_parser(name, help=what)
        end.add_argument("--author", help="recorded as published_by")
    commands.add_parser("show", help="the definitions in force")
    commands.add_parser("history", help="every publication, oldest first")
    dif = commands.add_parser("diff", help="what changes between two versions")
    dif.add_argument("old", nargs="?", help="sequence or directory (default: in force)")
    dif.add_argument("new", nargs="?", help="sequence or directory (default: the dir)")
    return parser


def _run(args: argparse.Namespace) -> int:
    # validate with an explicit directory needs no settings at all (works offline, in CI).
    if args.command == "validate" and args.directory is not None:
        return validate(args.directory)
    settings = load_settings()
    if args.command == "validate":
        return validate(settings.definitions_dir)
    if args.command in ("promote", "rollback"):
        return _end_rollout(settings, args.author or default_author(),
                            args.command == "promote")
    if args.command == "publish":
        return _publish(settings, args.directory or settings.definitions_dir,
                        args.author or default_author(),
                        (args.rollout_percent, args.rollout_audience), args.api_key)
    if args.command == "approve":
        return _approve(settings, args.proposal_id, args.api_key,
                        args.author or default_author())
    if args.command == "proposals":
        for p in read_proposals(settings):
            print(f"{p.proposal_id}  version {p.definitions.version}  by {p.proposed_by}  "
                  f"at {p.proposed_at.isoformat(timespec='seconds')}")
        return 0
    if args.command == "diff":
        return _diff(settings, args.old, args.new)
    return _show(settings) if args.command == "show" else _history(settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except DefinitionError as exc:
        print(f"invalid definitions: {exc}", file=sys.stderr)
        return 1
    except ActivationError as exc:  # ConfigError, BrokerError, ...: say what, no traceback
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
