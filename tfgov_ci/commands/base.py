"""``tfgov-ci base build``: the central base image (platform team)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.commands import actions
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    base = actions(
        commands,
        common,
        "base",
        help="the central base image (platform team)",
        description="Build the central, distroless base image.",
    )
    build = base.add_parser(
        "build",
        parents=[common()],
        help="build the base image from its definition and lock",
        description="Resolve (or read the lock of) the Debian packages and TensorFlow wheels of the "
        "base, build a reproducible OCI layout, and push it when the definition names a registry.",
    )
    build.add_argument(
        "--definition",
        type=Path,
        default=Path("tfgov-base.yaml"),
        metavar="FILE",
        help="base definition (default: ./tfgov-base.yaml)",
    )
    build.add_argument(
        "--update-lock", action="store_true", help="resolve the packages again and rewrite the lock"
    )
    build.set_defaults(handler=handle_build)


def handle_build(args: argparse.Namespace) -> int:
    from tfgov_ci._files import cache_dir
    from tfgov_ci.stages.build import base_factory

    definition = base_factory.load_definition(args.definition)
    out = getattr(args, "out", None) or base_factory.default_layout(definition)
    built = base_factory.build(definition, out, cache_dir(), update_lock=args.update_lock)
    print(
        f"base image {definition.name}: {built.packages} Debian packages, {built.wheels} wheels, "
        f"{built.size / 1e6:.1f} MB compressed"
    )
    print(f"layout  {out}:{built.tag}")
    print(f"digest  {built.digest}")
    pinned = base_factory.publish(definition, built)
    if pinned:
        print(f"pushed  {pinned}")
        print(f"pin it in tfgov.yaml:  base.image: {pinned}")
    return EXIT_OK
