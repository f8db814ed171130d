"""``tfgov-ci gitlab lint|note``: GitLab's API (lint the CI configuration, note the merge request)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.commands import actions, config_path, sentence, warn
from tfgov_ci.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from tfgov_ci.ci.gitlab_api import Server
    from tfgov_ci.commands import Commands, Common

LINT = "check the tfgov include's inputs, then have GitLab lint the expanded configuration"
NOTE = "post the policy summary (Markdown) to the merge request"


def add(commands: Commands, common: Common) -> None:
    gitlab = actions(
        commands,
        common,
        "gitlab",
        help="GitLab's API: lint the CI configuration, note the merge request",
        description="Talk to GitLab through its API (python-gitlab). Server, project and merge request "
        "come from the job's CI_SERVER_URL, CI_PROJECT_ID and CI_MERGE_REQUEST_IID (or the options); the "
        "token from TFGOV_GITLAB_TOKEN, else CI_JOB_TOKEN.",
    )
    lint = gitlab.add_parser("lint", parents=[common()], help=LINT, description=sentence(LINT))
    _server_options(lint)
    lint.add_argument(
        "--file",
        type=Path,
        default=Path(".gitlab-ci.yml"),
        metavar="FILE",
        help="default: .gitlab-ci.yml",
    )
    lint.add_argument("--ref", help="branch or tag to lint against (default: the project's default)")
    lint.set_defaults(handler=handle_lint)

    note = gitlab.add_parser("note", parents=[common()], help=NOTE, description=sentence(NOTE))
    _server_options(note)
    note.add_argument("--mr", metavar="IID", help="merge request (default: $CI_MERGE_REQUEST_IID)")
    note.add_argument("--summary", type=Path, metavar="FILE", help="default: <out>/policy/summary.md")
    note.set_defaults(handler=handle_note)


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="GitLab server (default: $CI_SERVER_URL)")
    parser.add_argument("--project", help="project id or path (default: $CI_PROJECT_ID)")


def _server(args: argparse.Namespace) -> Server:
    from tfgov_ci.ci import gitlab_api

    return gitlab_api.Server.from_env(os.environ, args.url, args.project)


def handle_lint(args: argparse.Namespace) -> int:
    from tfgov_ci.ci import gitlab_api

    result = gitlab_api.lint(_server(args), args.file, args.ref)
    warn(result.get("warnings") or [])
    print(f"ok: GitLab says {args.file} is valid ({len(result.get('jobs') or [])} jobs in a dry run)")
    return EXIT_OK


def handle_note(args: argparse.Namespace) -> int:
    from tfgov_ci.ci import gitlab_api

    server = _server(args)
    summary = args.summary or gitlab_api.summary_path(config_path(args), getattr(args, "out", None))
    if not summary.is_file():
        raise UsageError(
            f"{summary}: no policy summary", "run `tfgov-ci run policy` first, or pass --summary"
        )
    posted, updated = gitlab_api.note(server, args.mr, summary.read_text(encoding="utf-8"), os.environ)
    print(f"{'updated' if updated else 'posted'} the policy summary as note {posted.get('id')}")
    return EXIT_OK
