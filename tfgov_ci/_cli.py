"""The ``tfgov-ci`` command: parse, call the command's handler, map errors to exit codes.

Each command is a module of :mod:`tfgov_ci.commands` (its parser beside its handler); this module
keeps the common options, the order of the commands and the one error handler. Imports of the
library happen inside each handler, so ``tfgov-ci --version`` stays as fast as bare Python
(bench/startup.py measures it).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tfgov_ci import __version__
from tfgov_ci.commands import (
    Parser,
    base,
    common_options,
    emit,
    exceptions,
    gitlab,
    init,
    inventory,
    jenkins,
    lock,
    plan,
    policy,
    rescan,
    run,
    sbom,
    scan,
    trace,
    validate,
    verify,
    which,
)
from tfgov_ci.errors import EXIT_INTERRUPTED, EXIT_TOOL, EXIT_USAGE, TfgovError

if TYPE_CHECKING:
    from tfgov_ci.commands import Command

# The commands, in the order `tfgov-ci --help` lists them (tfgov_ci/commands/__init__.py: adding one).
COMMANDS: tuple[Command, ...] = (
    init,
    validate,
    plan,
    run,
    lock,
    sbom,
    emit,
    gitlab,
    jenkins,
    scan,
    exceptions,
    policy,
    verify,
    inventory,
    trace,
    which,
    rescan,
    base,
)

EPILOG = """\
exit codes: 0 passed, 1 a gate failed, 2 usage or configuration error,
            3 a tool or internal error, 130 interrupted
environment: TFGOV_ORG_CONFIG (organisation file), SOURCE_DATE_EPOCH (overrides the commit time),
             TFGOV_INVENTORY_URL (the inventory database)
"""


def build_parser() -> argparse.ArgumentParser:
    common = functools.cache(common_options)  # one parent parser of each kind, however many commands use it
    parser = Parser(
        prog="tfgov-ci",
        description="Governed TensorFlow container images: validate, lock, build, sbom, scan,\n"
        "policy, sign, publish and record, the same way in GitLab CI, Jenkins and on a laptop.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common()],
    )
    parser.add_argument("--version", action="version", version=f"tfgov-ci {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, title="commands")
    for command in COMMANDS:
        command.add(commands, common)
    return parser


def _print_traceback() -> None:
    import traceback  # only for --verbose: importing it is ~2 ms of every start

    traceback.print_exc()


def entry() -> int:
    """The installed ``tfgov-ci`` command (and ``python -m tfgov_ci``): :func:`main`, in a process
    of its own.

    jsonschema imports every optional format checker installed beside it, and rfc3987-syntax (the
    IRI checker of ``jsonschema[format]``, which Jupyter and CycloneDX's validator bring) compiles a
    grammar when it is imported: ``python -c 'import jsonschema'`` takes 1.9 s with it and 0.16 s
    without, in every command that reads a schema. tfgov-ci checks no format (its schemas name
    none that needs it), so its own process keeps that module out; a process that only imports
    tfgov-ci is left as it is.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None: "not installed"
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tfgov-ci`` command; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args_list or "--verbose" in args_list
    if verbose:  # each command and its time on stderr (not imported otherwise: start-up time)
        from tfgov_ci import tools

        tools.trace(True)
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except TfgovError as exc:
        if verbose:
            _print_traceback()
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one place an unexpected error becomes exit 3
        if verbose:
            _print_traceback()
        print(
            f"error: internal error: {type(exc).__name__}: {exc} "
            "(hint: rerun with --verbose for the traceback, and report it)",
            file=sys.stderr,
        )
        return EXIT_TOOL
