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
    parser.add_argument(
        "--from-dockerfile",
        type=Path,
        metavar="DOCKERFILE",
        help="take what tfgov.yaml says from this Dockerfile (its build context: DIR), and print "
        "what could not be carried over and why",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing tfgov.yaml")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci.scaffold import init

    if args.from_dockerfile is not None:
        return _from_dockerfile(args)
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


def _from_dockerfile(args: argparse.Namespace) -> int:
    from tfgov_ci.scaffold import init_from_dockerfile

    path, migration = init_from_dockerfile(
        args.directory,
        args.from_dockerfile,
        name=args.name,
        base=args.base,
        registry=args.registry,
        org_path=getattr(args, "org_config", None),
        force=args.force,
    )
    shown = args.from_dockerfile

    def where(line: int | None) -> str:
        return f"{shown}:{line}" if line is not None else f"{shown}"

    print(f"wrote {path} from {shown} (built by the native builder: the Dockerfile is no longer needed)")
    print("carried over:")
    for note in migration.carried:
        print(f"  {where(note.line)}: {note.text}")
    if migration.left:
        print(f"not carried over ({len(migration.left)}, each needs a person):")
        for note in migration.left:
            print(f"  {where(note.line)}: {note.text}")
    print("next: `tfgov-ci validate`, then `tfgov-ci run lock` and `tfgov-ci plan`")
    return EXIT_OK
