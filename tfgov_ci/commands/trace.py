"""``tfgov-ci trace IMAGE|DIGEST``: where an image came from and what the inventory knows of it."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from tfgov_ci.commands.inventory import inventory_option
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "trace",
        parents=[common(out_dir=False)],
        help="where an image came from: commit, pipeline, base, packages, findings, deployments",
        description="Look IMAGE up in the inventory (sha256:..., REPO@sha256:... as a cluster reports a "
        "running pod's image, or REPO:TAG) and print its commit, repository, pipeline and job, builder, "
        "base, lock, packages by type, findings by severity, policy decision, signature and "
        "attestations, and deployments. Exit 1 when the inventory does not hold it.",
    )
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    inventory_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci.inventory.store import open_store
    from tfgov_ci.inventory.trace import render, trace

    with open_store(args.inventory) as store, store.reading() as conn:
        found = trace(conn, args.image)
    if args.format == "json":
        print(json.dumps(found.to_json(), indent=2))
    else:
        print("\n".join(render(found)))
    return EXIT_OK
