"""``tfgov-ci which SPEC``: every image in the inventory holding a package in a version range."""

from __future__ import annotations

import argparse
import csv
import sys
from typing import TYPE_CHECKING

from tfgov_ci.commands.inventory import inventory_option
from tfgov_ci.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "which",
        parents=[common(out_dir=False)],
        help="every image holding a package in a version range, across the fleet",
        description="Every image in the inventory that holds SPEC: NAME (any version), or NAME with "
        "a range ('tensorflow<2.12', 'pyyaml>=5.1,<5.4'); or --purl pkg:deb/debian/openssl. PEP 440 "
        "ordering for PyPI, dpkg ordering for Debian (the scan stage's). With tags, commit, governed "
        "or not, decision and deployments. Exit 0 whether or not any image matches.",
    )
    parser.add_argument("spec", nargs="?", metavar="SPEC")
    parser.add_argument("--purl", metavar="PURL", help="match by package URL instead of name")
    parser.add_argument("--format", choices=("text", "json", "csv"), default="text", help="output format")
    inventory_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci.inventory import which
    from tfgov_ci.inventory.store import open_store

    if (args.spec is None) == (args.purl is None):
        raise UsageError("tfgov-ci which: give a SPEC or --purl PURL (one of them)", which.EXPECTED)
    spec = which.parse(args.purl, purl=True) if args.purl else which.parse(args.spec)
    with open_store(args.inventory) as store, store.reading() as conn:
        answer = which.which(conn, spec)
    if args.format == "json":
        print(which.dumps(answer))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=which.CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(which.csv_rows(answer))
    else:
        print("\n".join(which.render(answer)))
    return EXIT_OK
