"""``tfgov-ci plan``: the local dry run, the same plan object that ``run`` executes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tfgov_ci.commands import project, warn
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "plan",
        parents=[common()],
        help="local dry run: show what would run",
        description="Print the pipeline as it would run: stages in order, "
        "backends, commands and tools, inputs, outputs and image references. "
        "Touches nothing.",
    )
    # No choices: the planner refuses an unknown stage, naming the pipeline's own.
    parser.add_argument(
        "stages", nargs="*", metavar="STAGE", help="only these stages (default: the whole pipeline)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.add_argument(
        "--as",
        dest="as_ci",
        choices=("gitlab", "jenkins"),
        help="show which GitLab job or Jenkins stage would run which command",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="plan from a working tree with uncommitted changes (tags end in -dirty)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import json

    from tfgov_ci import pipeline
    from tfgov_ci.console import plan_text

    opened = project(args)
    result = pipeline.plan(opened.context, opened.pipeline, args.stages)
    warn(opened.warnings)
    if args.as_ci:
        from tfgov_ci.emit import ci_plan_text

        print(ci_plan_text(args.as_ci, result, opened.pipeline, opened.context), end="")
    elif args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(plan_text(result), end="")
    return EXIT_OK
