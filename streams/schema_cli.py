"""``scripts/schemas check|register|list|diff``: the schema workflow from a terminal.

Exit codes: 0 all good, 1 an incompatible change (each broken rule is printed),
2 the registry or the schema files are not usable.
"""

from __future__ import annotations

import argparse
import json
import sys

from streams.errors import ActivationError, IncompatibleSchemaError
from streams.schema_workflow import CheckResult, SchemaWorkflow
from streams.settings import load_settings


def _print_result(result: CheckResult) -> None:
    plan = result.plan
    version = f" (registry v{result.latest_version})" if result.latest_version else ""
    print(f"{plan.subject:40} {result.status:15} {plan.compatibility}{version}")
    for reason in result.reasons:
        print(f"    - {reason}")
    if result.approval:
        print(f"    approved break: {result.approval}")


def cmd_check(flow: SchemaWorkflow) -> int:
    results = [flow.check(plan) for plan in flow.plans()]
    for result in results:
        _print_result(result)
    bad = [r for r in results if not r.ok]
    if bad:
        print(
            f"\n{len(bad)} incompatible change(s). Fix the schema (add defaults, keep fields), "
            f"or record an intentional break in {flow.settings.breaking_changes_file} "
            "with its subject, fingerprint and reason."
        )
        for r in bad:
            print(
                f'  {{"subject": "{r.plan.subject}", "fingerprint": "{r.plan.fingerprint}", '
                '"reason": "..."}'
            )
        return 1
    return 0


def cmd_register(flow: SchemaWorkflow) -> int:
    failed = 0
    for plan in flow.plans():
        try:
            result, schema_id = flow.register(plan)
        except IncompatibleSchemaError as exc:
            print(f"{plan.subject:40} REFUSED")
            for reason in exc.reasons:
                print(f"    - {reason}")
            failed += 1
            continue
        _print_result(result)
        if schema_id is not None:
            print(f"    registered as schema id {schema_id}")
    return 1 if failed else 0


def cmd_list(flow: SchemaWorkflow) -> int:
    for row in flow.listing():
        print(
            f"{row['subject']:40} versions={row['versions']} compatibility={row['compatibility']}"
        )
    return 0


def cmd_diff(flow: SchemaWorkflow) -> int:
    for plan in flow.plans():
        lines = flow.diff(plan)
        print(f"{plan.subject}: {'no changes' if not lines else ''}")
        for line in lines:
            print(f"    {line}")
    return 0


def cmd_fingerprints(flow: SchemaWorkflow) -> int:
    """Fingerprints of the local schemas, for an entry in the breaking-changes file."""
    print(json.dumps({p.subject: p.fingerprint for p in flow.plans()}, indent=2))
    return 0


COMMANDS = {
    "check": cmd_check,
    "register": cmd_register,
    "list": cmd_list,
    "diff": cmd_diff,
    "fingerprints": cmd_fingerprints,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/schemas",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    try:
        flow = SchemaWorkflow(load_settings())
        return COMMANDS[args.command](flow)
    except ActivationError as exc:
        print(f"schemas: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
