"""``tfgov-ci exceptions check|export``: the governed exceptions file (tfgov-exceptions.yaml)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.commands import actions, policy, sentence
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common

CHECK = "check the file: schema, owners, expiry within the limit; list what expires"
EXPORT = "write the same decisions as OpenVEX JSON or trivy's .trivyignore.yaml"


def add(commands: Commands, common: Common) -> None:
    exceptions = actions(
        commands,
        common,
        "exceptions",
        help="governed exceptions: check, export",
        description="Work with the governed exceptions file (tfgov-exceptions.yaml).",
    )
    check = exceptions.add_parser("check", parents=[common()], help=CHECK, description=sentence(CHECK))
    export = exceptions.add_parser("export", parents=[common()], help=EXPORT, description=sentence(EXPORT))
    for action in (check, export):
        action.add_argument(
            "--file",
            type=Path,
            metavar="FILE",
            help="exceptions file (default: the policy stage's, tfgov-exceptions.yaml)",
        )
        action.set_defaults(handler=handle)
    export.add_argument("--format", choices=("openvex", "trivyignore"), required=True)
    export.add_argument("--output", type=Path, metavar="FILE", help="write it here (default: stdout)")


def handle(args: argparse.Namespace) -> int:
    import datetime as dt

    from tfgov_ci._files import atomic_write_text
    from tfgov_ci.stages.policy import exceptions
    from tfgov_ci.stages.policy.interface import settings

    options, project_dir = policy.options(args)
    chosen = settings(options)
    path = args.file or (project_dir or Path()) / chosen.exceptions
    today = exceptions.today()
    entries = exceptions.load(path, max_days=chosen.exceptions_max_days, on=today)
    if args.exceptions_command == "check":
        for entry in entries:
            left = (entry.expires - today).days
            state = "EXPIRED" if left < 0 else f"{left} days left"
            print(
                f"{entry.where}: {entry.id} {entry.package} (scope {entry.scope}), "
                f"owner {entry.owner}: {state}"
            )
        expired = [e for e in entries if e.expired(today)]
        print(f"{len(entries)} exceptions, {len(expired)} expired (limit {chosen.exceptions_max_days} days)")
        return 1 if expired else EXIT_OK
    if args.format == "openvex":
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        text = exceptions.openvex_json(entries, "tfgov-ci", stamp, f"urn:tfgov-ci:vex:{path.name}:{stamp}")
    else:
        text = exceptions.to_trivyignore(entries)
    if args.output:
        atomic_write_text(args.output, text)
        print(f"wrote {args.output} ({len(entries)} exceptions, {args.format})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK
