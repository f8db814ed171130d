"""``tfgov-ci run``: run the pipeline, or one stage of it."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tfgov_ci.commands import project, warn
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


class _StageNames:
    """The stage names of :data:`tfgov_ci.pipeline.STAGES`, in order, read only when argparse asks
    (``run --help``, or checking a STAGE): building the parser must not import the pipeline."""

    def __iter__(self) -> Iterator[str]:
        from tfgov_ci.pipeline import STAGES

        return iter(STAGES)

    def __contains__(self, name: object) -> bool:
        from tfgov_ci.pipeline import STAGES

        return name in STAGES


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "run",
        parents=[common()],
        help="run the pipeline, or one stage",
        description="Run the pipeline's stages in order, or one STAGE, which "
        "reads the earlier stages' results from the out directory (one CI "
        "job per stage). Writes <out>/<stage>/result.json and <out>/record.json.",
    )
    stage = parser.add_argument("stage", nargs="?", metavar="STAGE")
    # Set after add_argument, which (Python 3.14) expands the help string and so would read the
    # stage table on every start. An unknown STAGE stays argparse's usage error (exit 2).
    stage.choices, stage.help = _StageNames(), "one stage: %(choices)s"
    parser.add_argument(
        "--force-retag",
        action="store_true",
        help="let publish move a tag that names another digest (commit tags are immutable otherwise)",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="build from a working tree with uncommitted changes (tags end in -dirty)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci import pipeline
    from tfgov_ci.console import RichReporter
    from tfgov_ci.stages.record import document as record

    opened = project(args)
    ctx = opened.context
    the_plan = pipeline.plan(ctx, opened.pipeline, [args.stage] if args.stage else [])
    warn(opened.warnings)
    reporter = RichReporter()
    outcome = pipeline.run(ctx, the_plan, reporter)
    data = record.build(ctx, opened.pipeline)
    path = record.write(ctx, data)
    reporter.summary(data, path)
    if outcome.error is not None:
        raise outcome.error
    return EXIT_OK
