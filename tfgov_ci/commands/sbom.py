"""``tfgov-ci sbom fetch``: the SBOM published beside a pushed image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.commands import actions, config_path
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    sbom = actions(
        commands,
        common,
        "sbom",
        help="SBOMs in the registry",
        description="Work with the SBOMs published beside images.",
    )
    fetch = sbom.add_parser(
        "fetch",
        parents=[common()],
        help="the SBOM of a pushed image, found by its digest",
        description="Find the SBOM attached to IMAGE (REGISTRY/REPO:TAG or @sha256:...) through its "
        "digest, check it, and write it to stdout or --output.",
    )
    fetch.add_argument("image", metavar="IMAGE")
    fetch.add_argument("--format", choices=("spdx", "cyclonedx"), default="spdx", help="which SBOM")
    fetch.add_argument("--output", type=Path, metavar="FILE", help="write it here (default: stdout)")
    fetch.set_defaults(handler=handle_fetch)


def handle_fetch(args: argparse.Namespace) -> int:
    from tfgov_ci import config as config_mod
    from tfgov_ci._files import atomic_write_text
    from tfgov_ci.oci import referrers

    path = config_path(args)
    registries = config_mod.load(path, getattr(args, "org_config", None)).registries if path.is_file() else {}
    data = referrers.fetch(args.image, args.format, registries)
    if args.output:
        atomic_write_text(args.output, data.decode())
        print(f"wrote {args.output} ({len(data)} bytes, {args.format})", file=sys.stderr)
    else:
        sys.stdout.write(data.decode())
    return EXIT_OK
