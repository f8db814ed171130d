"""``tfgov-ci validate``: check tfgov.yaml and print every problem."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tfgov_ci.commands import config_path, warn
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "validate",
        parents=[common()],
        help="check tfgov.yaml and print every problem",
        description="Check the configuration: schema, organisation locks, base "
        "image pinned and allowed, runtime versions, paths. Prints every problem "
        "with its file, line and key path.",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci.project import validate

    config, findings = validate(config_path(args), getattr(args, "org_config", None))
    warn(findings.warnings)
    print(
        f"ok: {config.file.name} is valid (image {config.image.name}, "
        f"base {config.base.image.split('@')[0]}, tensorflow {config.runtime.tensorflow})"
    )
    return EXIT_OK
