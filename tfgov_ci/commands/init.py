"""``tfgov-ci init``: write a commented tfgov.yaml."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "init",
        parents=[common()],
        help="write a commented tfgov.yaml",
        description="Write a commented tfgov.yaml for the model repository "
        "in DIR, from what is there and the organisation file.",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="the model repository (default: .)",
    )
    parser.add_argument("--name", help="image name (default: from the folder name)")
    parser.add_argument(
        "--base",
        metavar="REF@sha256:...",
        help="central base image, pinned by digest (default: the organisation's)",
    )
    parser.add_argument("--registry", help="registry host[:port] to publish to")
    parser.add_argument("--force", action="store_true", help="overwrite an existing tfgov.yaml")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci.scaffold import init

    path = init(
        args.directory,
        name=args.name,
        base=args.base,
        registry=args.registry,
        org_path=getattr(args, "org_config", None),
        force=args.force,
    )
    print(f"wrote {path}; next: `tfgov-ci validate`, then `tfgov-ci plan`")
    return EXIT_OK
