"""``tfgov-ci emit``: write (or check) the GitLab template and the Jenkins library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "emit",
        parents=[common()],
        help="write the GitLab template or Jenkins library from the pipeline",
        description="Write templates/gitlab (GitLab CI template, also a CI/CD component) or "
        "templates/jenkins (Jenkins shared library) from a pipeline definition and the stage table. "
        "With --check, write nothing: exit 1 if the committed templates differ from what emit writes.",
    )
    parser.add_argument("target", nargs="?", choices=("gitlab", "jenkins"), help="what to write")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("templates"),
        metavar="DIR",
        help="templates folder (default: templates)",
    )
    parser.add_argument(
        "--pipeline", default="tf-image", metavar="NAME|FILE", help="pipeline definition (default: tf-image)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 on any difference; write nothing")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci import emit
    from tfgov_ci.pipeline import load_pipeline

    pipeline_def = load_pipeline(args.pipeline, Path())
    targets = [args.target] if args.target else list(emit.TARGETS)
    if args.check:
        problems = [
            p for target in targets for p in emit.differences(target, pipeline_def, args.dir / target)
        ]
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("templates differ: run `tfgov-ci emit` and commit the result", file=sys.stderr)
            return 1
        print(f"templates match {pipeline_def.file.name} and the stage table ({', '.join(targets)})")
        return EXIT_OK
    if args.target is None:
        raise UsageError("emit needs a target: gitlab or jenkins", "or --check to compare both")
    for path in emit.write(args.target, pipeline_def, args.dir / args.target):
        print(f"wrote {path}")
    return EXIT_OK
