"""``tfgov-ci lock``: lock the requirements, or check the committed lock."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tfgov_ci.commands import project
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "lock",
        parents=[common()],
        help="lock the requirements, or check the lock",
        description="Resolve requirements.txt for the base image's Python and platform, with hashes and "
        "the base's packages as constraints, into the lock file (and its dependency tree). With --check, "
        "write nothing: exit 1 if the committed lock is not what a lock now would be.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the lock is stale; write nothing")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci.stages.lock.interface import check_lock, write_lock

    opened = project(args, allow_dirty=True)  # locking makes no tags
    if args.check:
        print(check_lock(opened.context, opened.pipeline))
    else:
        print(write_lock(opened.context, opened.pipeline))
    return EXIT_OK
