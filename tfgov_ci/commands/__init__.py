"""The commands of ``tfgov-ci``: one module a command, named as the command.

Each module has ``add(commands, common)``, which adds the command's parser (and its actions') with
``set_defaults(handler=...)``, and the handler beside it: a function of the parsed arguments that
returns the exit code. Handlers import the library inside themselves, so that building the parser
(every start, ``--version`` too) imports none of it.

To add a command: write ``tfgov_ci/commands/<name>.py`` with ``add`` and its handler, and list the
module in ``tfgov_ci._cli.COMMANDS``, where the order is the order of ``tfgov-ci --help``. A handler
calls the library and prints; deciding anything (a default path, what to push) is the library's.
A failure is a :class:`tfgov_ci.errors.TfgovError`, which ``tfgov_ci._cli.main`` turns into its
exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

from tfgov_ci.errors import UsageError

if TYPE_CHECKING:
    from tfgov_ci.project import Project

    Commands: TypeAlias = argparse._SubParsersAction["Parser"]  # what ``add`` adds its parser to


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a TfgovError like every other (exit 2, one line, hint)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}", f"see `{self.prog} --help`")


def common_options(*, out_dir: bool = True) -> Parser:
    # SUPPRESS: an option given before the command is not overwritten by the command's default.
    common = Parser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "-c",
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="tfgov.yaml to use (default: ./tfgov.yaml)",
    )
    group.add_argument(
        "--org-config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="organisation file (default: $TFGOV_ORG_CONFIG)",
    )
    if out_dir:  # a command whose own --out names a file leaves this one out
        group.add_argument(
            "-o",
            "--out",
            type=Path,
            default=argparse.SUPPRESS,
            metavar="DIR",
            help="out directory for stage results (default: .tfgov/out beside tfgov.yaml)",
        )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show each command run, with its time, and tracebacks",
    )
    return common


class Command(Protocol):
    """What ``tfgov_ci._cli.COMMANDS`` lists: a module of this package."""

    def add(self, commands: Commands, common: Common) -> None: ...


class Common(Protocol):
    """The parent parser of the common options (``-c``, ``--org-config``, ``-o``, ``-v``);
    ``out_dir=False`` leaves ``-o/--out`` out, for a command whose own ``--out`` names a file."""

    def __call__(self, *, out_dir: bool = True) -> Parser: ...


def actions(commands: Commands, common: Common, name: str, *, help: str, description: str) -> Commands:
    """A command that is a choice of actions (``tfgov-ci sbom fetch``): what its actions' parsers are
    added to; the chosen action's name is ``args.<name>_command``. argparse makes those parsers of the
    command parser's class (:class:`Parser`), so a usage error there is a UsageError too."""
    group = commands.add_parser(name, parents=[common()], help=help, description=description)
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION", title="actions", required=True)


def sentence(text: str) -> str:
    """A help line as a description: capitalised, with a full stop."""
    return text[0].upper() + text[1:] + "."


def config_path(args: argparse.Namespace) -> Path:
    """The tfgov.yaml that ``--config`` names (a file, or a folder holding one); ./tfgov.yaml."""
    from tfgov_ci.config import find_config

    return find_config(getattr(args, "config", Path()))


def project(args: argparse.Namespace, *, allow_dirty: bool | None = None) -> Project:
    """The project the common options name, opened (``--allow-dirty`` unless ``allow_dirty``)."""
    from tfgov_ci.project import open_project

    return open_project(
        config_path(args),
        org_path=getattr(args, "org_config", None),
        out_dir=getattr(args, "out", None),
        allow_dirty=args.allow_dirty if allow_dirty is None else allow_dirty,
        force_retag=getattr(args, "force_retag", False),
    )


def warn(warnings: Sequence[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
