"""``tfgov-ci inventory import|list|mark-deployed``: the fleet's store of every image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.commands import actions, sentence, warn
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common, Parser

IMPORT = "store build records, or the out directories holding them (record plus SBOM), in the inventory"
INVENTORY_HELP = (
    "the inventory database: sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB "
    "(default: $TFGOV_INVENTORY_URL, else ~/.local/share/tfgov-ci/inventory.sqlite)"
)


def inventory_option(parser: Parser | argparse.ArgumentParser) -> None:
    """``--inventory URL``, which every fleet command takes."""
    parser.add_argument("--inventory", metavar="URL", help=INVENTORY_HELP)


def add(commands: Commands, common: Common) -> None:
    inventory = actions(
        commands,
        common,
        "inventory",
        help="the fleet inventory: import build records",
        description="The store of every image: SQLite by default, PostgreSQL by URL.",
    )
    imported = inventory.add_parser(
        "import", parents=[common(out_dir=False)], help=IMPORT, description=sentence(IMPORT)
    )
    imported.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="a record.json, or an out directory (.tfgov/out)"
    )
    inventory_option(imported)
    imported.set_defaults(handler=handle_import)


def handle_import(args: argparse.Namespace) -> int:
    from tfgov_ci.inventory.ingest import import_paths
    from tfgov_ci.inventory.store import open_store

    with open_store(args.inventory) as store:
        done = import_paths(store, args.paths)
        for image in done.images:
            where = image.repository or "(no repository)"
            print(
                f"recorded {where}@{image.digest}: {len(image.packages)} packages, "
                f"{len(image.findings)} findings, from {image.source}"
            )
        warn(done.warnings)
        print(f"inventory: {store.shown}")
    return EXIT_OK
