"""``tfgov-ci jenkins run``: Jenkins' API (trigger a job, stream its console)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from tfgov_ci.commands import actions
from tfgov_ci.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    jenkins = actions(
        commands,
        common,
        "jenkins",
        help="Jenkins' API: trigger a job and stream its console",
        description="Talk to Jenkins through its API (jenkinsapi): server from JENKINS_URL (or --url), "
        "user and API token from TFGOV_JENKINS_USER and TFGOV_JENKINS_TOKEN.",
    )
    run = jenkins.add_parser(
        "run",
        parents=[common()],
        help="trigger JOB, stream its console; exit 1 unless it succeeds",
        description="Trigger JOB (with --param NAME=VALUE...), stream its console until it ends, "
        "exit 0 on SUCCESS and 1 on any other result.",
    )
    run.add_argument("job", metavar="JOB")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="repeatable")
    run.add_argument("--url", help="Jenkins server (default: $JENKINS_URL)")
    run.set_defaults(handler=handle_run)


def handle_run(args: argparse.Namespace) -> int:
    from tfgov_ci.ci import jenkins_api

    params = {}
    for pair in args.param:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param {pair!r} is not NAME=VALUE")
        params[name] = value
    result = jenkins_api.run(args.job, params, os.environ, args.url, sys.stdout.write)
    print(f"\n{args.job}: {result}")
    return EXIT_OK
