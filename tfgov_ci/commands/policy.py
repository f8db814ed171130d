"""``tfgov-ci policy eval|test``: the policy gate outside a pipeline run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.commands import actions, config_path
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common

ENGINES = ("regopy", "opa")


def add(commands: Commands, common: Common) -> None:
    policy = actions(
        commands,
        common,
        "policy",
        help="evaluate or test Rego policies",
        description="The policy gate outside a pipeline run.",
    )
    evaluate = policy.add_parser(
        "eval",
        parents=[common()],
        help="evaluate once over a saved input document: exit 0 allow, 1 deny",
        description="Evaluate the default bundle, the configured policies and each --policy over INPUT "
        "(e.g. <out>/policy/policy-input.json) and print the decision. Exit 0 allow, 1 deny.",
    )
    evaluate.add_argument("--input", dest="input_file", type=Path, required=True, metavar="INPUT.json")
    evaluate.add_argument(
        "--policy",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a .rego file or folder (repeatable)",
    )
    evaluate.add_argument("--exceptions", type=Path, metavar="FILE", help="apply this exceptions file first")
    evaluate.add_argument("--engine", choices=ENGINES, default="regopy")
    evaluate.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    evaluate.set_defaults(handler=handle_eval)

    test = policy.add_parser(
        "test",
        parents=[common()],
        help="run policies against saved inputs and expected decisions",
        description="For each NAME.input.json in DIR, evaluate it and compare with NAME.expect.yaml "
        "(allow, denied_rules, messages_contain). Exit 1 when a case fails.",
    )
    test.add_argument("directory", nargs="?", type=Path, default=Path("policy-tests"), metavar="DIR")
    test.add_argument("--engine", choices=ENGINES, default="regopy")
    test.set_defaults(handler=handle_test)


def options(args: argparse.Namespace) -> tuple[dict[str, object], Path | None]:
    """The policy stage's options in tfgov.yaml and its project folder, when there is one here;
    else the defaults and None."""
    from tfgov_ci import config as config_mod

    path = config_path(args)
    if not path.is_file():
        return {}, None
    config = config_mod.load(path, getattr(args, "org_config", None))
    return dict(config.stage("policy").options), config.project_dir


def handle_eval(args: argparse.Namespace) -> int:
    import json

    from tfgov_ci.stages.policy import replay

    policy_options, project_dir = options(args)
    decision = replay.evaluate_file(
        args.input_file,
        options=policy_options,
        project_dir=project_dir,
        policies=args.policy,
        exceptions_file=args.exceptions,
        engine=args.engine,
    )
    if args.format == "json":
        print(json.dumps(decision.to_json(), indent=2))
    else:
        for result in decision.rules:
            print(f"{'pass' if result.passed else 'DENY'} {result.name}")
        for name, message in decision.denials:
            print(f"  {name}: {message}")
        print("allowed" if decision.allow else f"denied ({len(decision.denials)} reasons)")
    return EXIT_OK if decision.allow else 1


def handle_test(args: argparse.Namespace) -> int:
    from tfgov_ci.stages.policy import replay

    policy_options, project_dir = options(args)
    results = replay.run_tests(
        args.directory, options=policy_options, project_dir=project_dir, engine=args.engine
    )
    for case in results:
        print(f"{'PASS' if case.passed else 'FAIL'} {case.name}: {case.detail}")
    failed = sum(1 for case in results if not case.passed)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else EXIT_OK
