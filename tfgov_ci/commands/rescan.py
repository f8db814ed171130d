"""``tfgov-ci rescan --advisories DIR``: every stored SBOM against an OSV folder; what is new."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.commands import warn
from tfgov_ci.commands.inventory import inventory_option
from tfgov_ci.errors import EXIT_GATE, EXIT_OK, UsageError

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common

# tfgov_ci.findings.SEVERITIES, written out: building the parser imports none of the library
# (tests/unit/test_inventory_config.py checks that the two agree).
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "rescan",
        parents=[common(out_dir=False)],
        help="every stored SBOM against a folder of OSV advisories: what is newly affected",
        description="Match each distinct PyPI and Debian package version in the inventory against a "
        "folder of OSV advisories (the scan stage's offline matcher), store and print the findings "
        "that are new since the pipeline's scan and the last rescan, per image, with the advisory "
        "database's digest and the time. Exit 1 when a new finding is at or above --fail-on.",
    )
    parser.add_argument(
        "--advisories", type=Path, required=True, metavar="DIR", help="a folder of OSV advisories"
    )
    parser.add_argument(
        "--fail-on",
        choices=SEVERITIES,
        default="HIGH",
        help="exit 1 on a new finding this severe (default HIGH)",
    )
    parser.add_argument(
        "--window",
        type=int,
        metavar="DAYS",
        help="only images built or deployed in the last DAYS days (default: every image)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    inventory_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci.inventory.rescan import render, rescan
    from tfgov_ci.inventory.store import open_store

    if args.window is not None and args.window < 0:
        raise UsageError(f"--window {args.window}: a number of days, 0 or more")
    with open_store(args.inventory) as store, store.writing() as conn:
        result = rescan(conn, args.advisories.resolve(), args.window)
    print(json.dumps(result.to_json(), indent=2) if args.format == "json" else "\n".join(render(result)))
    skipped = len(result.warnings)
    warn([*result.warnings[:3], *([f"... and {skipped - 3} more advisories skipped"] if skipped > 3 else [])])
    failing = result.at_or_above(args.fail_on)
    return EXIT_GATE if failing else EXIT_OK
