"""The ``tfgov-ci`` command: parse, call one function, map errors to exit codes.

Imports of the library happen inside each command, so ``tfgov-ci --version`` stays as fast as
bare Python (bench/startup.py measures it).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci import __version__
from tfgov_ci.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TOOL, EXIT_USAGE, TfgovError, UsageError

if TYPE_CHECKING:
    from tfgov_ci.project import Project

STAGE_NAMES = ("validate", "lock", "build", "sbom", "scan", "policy", "sign", "publish", "record")

EPILOG = """\
exit codes: 0 passed, 1 a gate failed, 2 usage or configuration error,
            3 a tool or internal error, 130 interrupted
environment: TFGOV_ORG_CONFIG (organisation file), SOURCE_DATE_EPOCH (overrides the commit time)
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a TfgovError like every other (exit 2, one line, hint)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}", f"see `{self.prog} --help`")


def _common(*, out_dir: bool = True) -> _Parser:
    # SUPPRESS: an option given before the command is not overwritten by the command's default.
    common = _Parser(add_help=False)
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
        help="show tracebacks and more detail",
    )
    return common


def _actions(
    commands: Any, common: argparse.ArgumentParser, name: str, *, help: str, description: str
) -> Any:
    """A command that is a choice of actions (`tfgov-ci sbom fetch`): the parsers of its actions
    (the chosen one in ``args.<name>_command``)."""
    group = commands.add_parser(name, parents=[common], help=help, description=description)
    return group.add_subparsers(
        dest=f"{name}_command", metavar="ACTION", parser_class=_Parser, title="actions", required=True
    )


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="tfgov-ci",
        description="Governed TensorFlow container images: validate, lock, build, sbom, scan,\n"
        "policy, sign, publish and record, the same way in GitLab CI, Jenkins and on a laptop.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"tfgov-ci {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, title="commands"
    )

    init = commands.add_parser(
        "init",
        parents=[common],
        help="write a commented tfgov.yaml",
        description="Write a commented tfgov.yaml for the model repository "
        "in DIR, from what is there and the organisation file.",
    )
    init.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="the model repository (default: .)",
    )
    init.add_argument("--name", help="image name (default: from the folder name)")
    init.add_argument(
        "--base",
        metavar="REF@sha256:...",
        help="central base image, pinned by digest (default: the organisation's)",
    )
    init.add_argument("--registry", help="registry host[:port] to publish to")
    init.add_argument("--force", action="store_true", help="overwrite an existing tfgov.yaml")

    commands.add_parser(
        "validate",
        parents=[common],
        help="check tfgov.yaml and print every problem",
        description="Check the configuration: schema, organisation locks, base "
        "image pinned and allowed, runtime versions, paths. Prints every problem "
        "with its file, line and key path.",
    )

    plan = commands.add_parser(
        "plan",
        parents=[common],
        help="local dry run: show what would run",
        description="Print the pipeline as it would run: stages in order, "
        "backends, commands and tools, inputs, outputs and image references. "
        "Touches nothing.",
    )
    plan.add_argument(
        "stages", nargs="*", metavar="STAGE", help="only these stages (default: the whole pipeline)"
    )
    plan.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    plan.add_argument(
        "--as",
        dest="as_ci",
        choices=("gitlab", "jenkins"),
        help="show which GitLab job or Jenkins stage would run which command",
    )
    plan.add_argument(
        "--allow-dirty",
        action="store_true",
        help="plan from a working tree with uncommitted changes (tags end in -dirty)",
    )

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run the pipeline, or one stage",
        description="Run the pipeline's stages in order, or one STAGE, which "
        "reads the earlier stages' results from the out directory (one CI "
        "job per stage). Writes <out>/<stage>/result.json and <out>/record.json.",
    )
    run.add_argument(
        "stage", nargs="?", choices=STAGE_NAMES, metavar="STAGE", help=f"one stage: {', '.join(STAGE_NAMES)}"
    )
    run.add_argument(
        "--force-retag",
        action="store_true",
        help="let publish move a tag that names another digest (commit tags are immutable otherwise)",
    )
    run.add_argument(
        "--allow-dirty",
        action="store_true",
        help="build from a working tree with uncommitted changes (tags end in -dirty)",
    )
    lock = commands.add_parser(
        "lock",
        parents=[common],
        help="lock the requirements, or check the lock",
        description="Resolve requirements.txt for the base image's Python and platform, with hashes and "
        "the base's packages as constraints, into the lock file (and its dependency tree). With --check, "
        "write nothing: exit 1 if the committed lock is not what a lock now would be.",
    )
    lock.add_argument("--check", action="store_true", help="exit 1 when the lock is stale; write nothing")

    sbom_commands = _actions(
        commands,
        common,
        "sbom",
        help="SBOMs in the registry",
        description="Work with the SBOMs published beside images.",
    )
    fetch = sbom_commands.add_parser(
        "fetch",
        parents=[common],
        help="the SBOM of a pushed image, found by its digest",
        description="Find the SBOM attached to IMAGE (REGISTRY/REPO:TAG or @sha256:...) through its "
        "digest, check it, and write it to stdout or --output.",
    )
    fetch.add_argument("image", metavar="IMAGE")
    fetch.add_argument("--format", choices=("spdx", "cyclonedx"), default="spdx", help="which SBOM")
    fetch.add_argument("--output", type=Path, metavar="FILE", help="write it here (default: stdout)")

    emit = commands.add_parser(
        "emit",
        parents=[common],
        help="write the GitLab template or Jenkins library from the pipeline",
        description="Write templates/gitlab (GitLab CI template, also a CI/CD component) or "
        "templates/jenkins (Jenkins shared library) from a pipeline definition and the stage table. "
        "With --check, write nothing: exit 1 if the committed templates differ from what emit writes.",
    )
    emit.add_argument("target", nargs="?", choices=("gitlab", "jenkins"), help="what to write")
    emit.add_argument(
        "--dir",
        type=Path,
        default=Path("templates"),
        metavar="DIR",
        help="templates folder (default: templates)",
    )
    emit.add_argument(
        "--pipeline", default="tf-image", metavar="NAME|FILE", help="pipeline definition (default: tf-image)"
    )
    emit.add_argument("--check", action="store_true", help="exit 1 on any difference; write nothing")

    gitlab_commands = _actions(
        commands,
        common,
        "gitlab",
        help="GitLab's API: lint the CI configuration, note the merge request",
        description="Talk to GitLab through its API (python-gitlab). Server, project and merge request "
        "come from the job's CI_SERVER_URL, CI_PROJECT_ID and CI_MERGE_REQUEST_IID (or the options); the "
        "token from TFGOV_GITLAB_TOKEN, else CI_JOB_TOKEN.",
    )
    for name, text in (
        ("lint", "check the tfgov include's inputs, then have GitLab lint the expanded configuration"),
        ("note", "post the policy summary (Markdown) to the merge request"),
    ):
        action = gitlab_commands.add_parser(
            name, parents=[common], help=text, description=text[0].upper() + text[1:] + "."
        )
        action.add_argument("--url", help="GitLab server (default: $CI_SERVER_URL)")
        action.add_argument("--project", help="project id or path (default: $CI_PROJECT_ID)")
        if name == "lint":
            action.add_argument(
                "--file",
                type=Path,
                default=Path(".gitlab-ci.yml"),
                metavar="FILE",
                help="default: .gitlab-ci.yml",
            )
            action.add_argument(
                "--ref", help="branch or tag to lint against (default: the project's default)"
            )
        else:
            action.add_argument("--mr", metavar="IID", help="merge request (default: $CI_MERGE_REQUEST_IID)")
            action.add_argument(
                "--summary", type=Path, metavar="FILE", help="default: <out>/policy/summary.md"
            )

    jenkins_commands = _actions(
        commands,
        common,
        "jenkins",
        help="Jenkins' API: trigger a job and stream its console",
        description="Talk to Jenkins through its API (jenkinsapi): server from JENKINS_URL (or --url), "
        "user and API token from TFGOV_JENKINS_USER and TFGOV_JENKINS_TOKEN.",
    )
    jenkins_run = jenkins_commands.add_parser(
        "run",
        parents=[common],
        help="trigger JOB, stream its console; exit 1 unless it succeeds",
        description="Trigger JOB (with --param NAME=VALUE...), stream its console until it ends, "
        "exit 0 on SUCCESS and 1 on any other result.",
    )
    jenkins_run.add_argument("job", metavar="JOB")
    jenkins_run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="repeatable")
    jenkins_run.add_argument("--url", help="Jenkins server (default: $JENKINS_URL)")

    scan_commands = _actions(
        commands,
        common,
        "scan",
        help="vulnerability reports made elsewhere",
        description="Work with vulnerability reports outside a pipeline run.",
    )
    scan_import = scan_commands.add_parser(
        "import",
        parents=[_common(out_dir=False)],
        help="normalise a trivy or grype JSON report into a findings file",
        description="Read a trivy (SchemaVersion 2) or grype JSON report, whole, and write its findings "
        "in tfgov-ci's normalised schema (schemas/findings.schema.json).",
    )
    scan_import.add_argument("report", type=Path, metavar="REPORT")
    scan_import.add_argument("--format", choices=("trivy", "grype"), help="report format (default: detected)")
    scan_import.add_argument(
        "--out", dest="findings_out", type=Path, required=True, metavar="FILE", help="findings file to write"
    )

    exc_commands = _actions(
        commands,
        common,
        "exceptions",
        help="governed exceptions: check, export",
        description="Work with the governed exceptions file (tfgov-exceptions.yaml).",
    )
    for name, text in (
        ("check", "check the file: schema, owners, expiry within the limit; list what expires"),
        ("export", "write the same decisions as OpenVEX JSON or trivy's .trivyignore.yaml"),
    ):
        action = exc_commands.add_parser(
            name, parents=[common], help=text, description=text[0].upper() + text[1:] + "."
        )
        action.add_argument(
            "--file",
            type=Path,
            metavar="FILE",
            help="exceptions file (default: the policy stage's, tfgov-exceptions.yaml)",
        )
        if name == "export":
            action.add_argument("--format", choices=("openvex", "trivyignore"), required=True)
            action.add_argument("--output", type=Path, metavar="FILE", help="write it here (default: stdout)")

    policy_commands = _actions(
        commands,
        common,
        "policy",
        help="evaluate or test Rego policies",
        description="The policy gate outside a pipeline run.",
    )
    policy_eval = policy_commands.add_parser(
        "eval",
        parents=[common],
        help="evaluate once over a saved input document: exit 0 allow, 1 deny",
        description="Evaluate the default bundle, the configured policies and each --policy over INPUT "
        "(e.g. <out>/policy/policy-input.json) and print the decision. Exit 0 allow, 1 deny.",
    )
    policy_eval.add_argument("--input", dest="input_file", type=Path, required=True, metavar="INPUT.json")
    policy_eval.add_argument(
        "--policy",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a .rego file or folder (repeatable)",
    )
    policy_eval.add_argument(
        "--exceptions", type=Path, metavar="FILE", help="apply this exceptions file first"
    )
    policy_eval.add_argument("--engine", choices=("regopy", "opa"), default="regopy")
    policy_eval.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    policy_test = policy_commands.add_parser(
        "test",
        parents=[common],
        help="run policies against saved inputs and expected decisions",
        description="For each NAME.input.json in DIR, evaluate it and compare with NAME.expect.yaml "
        "(allow, denied_rules, messages_contain). Exit 1 when a case fails.",
    )
    policy_test.add_argument("directory", nargs="?", type=Path, default=Path("policy-tests"), metavar="DIR")
    policy_test.add_argument("--engine", choices=("regopy", "opa"), default="regopy")

    base_commands = _actions(
        commands,
        common,
        "base",
        help="the central base image (platform team)",
        description="Build the central, distroless base image.",
    )
    base_build = base_commands.add_parser(
        "build",
        parents=[common],
        help="build the base image from its definition and lock",
        description="Resolve (or read the lock of) the Debian packages and TensorFlow wheels of the "
        "base, build a reproducible OCI layout, and push it when the definition names a registry.",
    )
    base_build.add_argument(
        "--definition",
        type=Path,
        default=Path("tfgov-base.yaml"),
        metavar="FILE",
        help="base definition (default: ./tfgov-base.yaml)",
    )
    base_build.add_argument(
        "--update-lock", action="store_true", help="resolve the packages again and rewrite the lock"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tfgov-ci`` command; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args_list or "--verbose" in args_list
    try:
        args = build_parser().parse_args(args_list)
        if args.command is None:
            build_parser().print_help()
            return EXIT_USAGE
        handlers = {
            "init": _init,
            "validate": _validate,
            "plan": _plan,
            "run": _run,
            "lock": _lock,
            "sbom": _sbom,
            "emit": _emit,
            "gitlab": _gitlab,
            "jenkins": _jenkins,
            "scan": _scan,
            "exceptions": _exceptions,
            "policy": _policy,
            "base": _base,
        }
        handler = handlers[args.command]
        return handler(args)
    except TfgovError as exc:
        if verbose:
            traceback.print_exc()
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one place an unexpected error becomes exit 3
        if verbose:
            traceback.print_exc()
        print(
            f"error: internal error: {type(exc).__name__}: {exc} "
            "(hint: rerun with --verbose for the traceback, and report it)",
            file=sys.stderr,
        )
        return EXIT_TOOL


def _config_path(args: argparse.Namespace) -> Path:
    from tfgov_ci.config import find_config

    return find_config(getattr(args, "config", Path()))


def _warn(warnings: Sequence[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _init(args: argparse.Namespace) -> int:
    from tfgov_ci.scaffold import init

    path = init(
        args.directory,
        name=args.name,
        base=args.base,
        registry=args.registry,
        org_path=getattr(args, "org_config", None),
        force=args.force,
    )
    print(f"wrote {path}; next: `tfgov-ci validate`, then `tfgov-ci plan`")
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from tfgov_ci.project import validate

    config, findings = validate(_config_path(args), getattr(args, "org_config", None))
    _warn(findings.warnings)
    print(
        f"ok: {config.file.name} is valid (image {config.image.name}, "
        f"base {config.base.image.split('@')[0]}, tensorflow {config.runtime.tensorflow})"
    )
    return EXIT_OK


def _open(args: argparse.Namespace) -> Project:
    from tfgov_ci.project import open_project

    return open_project(
        _config_path(args),
        org_path=getattr(args, "org_config", None),
        out_dir=getattr(args, "out", None),
        allow_dirty=args.allow_dirty,
        force_retag=getattr(args, "force_retag", False),
    )


def _plan(args: argparse.Namespace) -> int:
    from tfgov_ci import pipeline
    from tfgov_ci.console import plan_text

    project = _open(args)
    result = pipeline.plan(project.context, project.pipeline, args.stages)
    _warn(project.warnings)
    if args.as_ci:
        from tfgov_ci.emit import ci_plan_text

        print(ci_plan_text(args.as_ci, result, project.pipeline, project.context), end="")
    elif args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(plan_text(result), end="")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from tfgov_ci import pipeline, record
    from tfgov_ci.console import RichReporter

    project = _open(args)
    ctx = project.context
    the_plan = pipeline.plan(ctx, project.pipeline, [args.stage] if args.stage else [])
    _warn(project.warnings)
    reporter = RichReporter()
    outcome = pipeline.run(ctx, the_plan, reporter)
    data = record.build(ctx, project.pipeline)
    path = record.write(ctx, data)
    reporter.summary(data, path)
    if outcome.error is not None:
        raise outcome.error
    return EXIT_OK


def _base(args: argparse.Namespace) -> int:
    from tfgov_ci._files import cache_dir
    from tfgov_ci.stages.build import base_factory

    definition = base_factory.load_definition(args.definition)
    out = getattr(args, "out", None) or definition.file.parent / ".tfgov" / "base" / "oci"
    built = base_factory.build(definition, out, cache_dir(), update_lock=args.update_lock)
    print(
        f"base image {definition.name}: {built.packages} Debian packages, {built.wheels} wheels, "
        f"{built.size / 1e6:.1f} MB compressed"
    )
    print(f"layout  {out}:{built.tag}")
    print(f"digest  {built.digest}")
    if definition.registry:
        from tfgov_ci.stages.publish.skopeo import push_layout

        ref = f"{definition.registry}/{definition.repository}"
        push_layout(out, built.tag, built.digest, ref, (built.tag,), definition.registries)
        print(f"pushed  {ref}@{built.digest}")
        print(f"pin it in tfgov.yaml:  base.image: {ref}@{built.digest}")
    return EXIT_OK


def _lock(args: argparse.Namespace) -> int:
    from tfgov_ci.project import open_project
    from tfgov_ci.stages.lock.interface import check_lock, write_lock

    project = open_project(
        _config_path(args),
        org_path=getattr(args, "org_config", None),
        out_dir=getattr(args, "out", None),
        allow_dirty=True,  # locking makes no tags
    )
    if args.check:
        print(check_lock(project.context, project.pipeline))
    else:
        print(write_lock(project.context, project.pipeline))
    return EXIT_OK


def _sbom(args: argparse.Namespace) -> int:
    from tfgov_ci import config as config_mod
    from tfgov_ci._files import atomic_write_text
    from tfgov_ci.oci import referrers

    path = _config_path(args)
    registries = config_mod.load(path, getattr(args, "org_config", None)).registries if path.is_file() else {}
    data = referrers.fetch(args.image, args.format, registries)
    if args.output:
        atomic_write_text(args.output, data.decode())
        print(f"wrote {args.output} ({len(data)} bytes, {args.format})", file=sys.stderr)
    else:
        sys.stdout.write(data.decode())
    return EXIT_OK


def _scan(args: argparse.Namespace) -> int:
    from tfgov_ci.stages.scan.interface import import_report

    report = import_report(args.report, args.format)
    report.write(args.findings_out)
    counts = ", ".join(f"{n} {level.lower()}" for level, n in report.counts().items() if n) or "none"
    print(
        f"wrote {args.findings_out}: {len(report.findings)} findings ({counts}), "
        f"from {report.scanners[0].name}"
    )
    return EXIT_OK


def _policy_options(args: argparse.Namespace) -> tuple[dict[str, object], Path | None]:
    """The policy options of tfgov.yaml when there is one here, else the defaults."""
    from tfgov_ci import config as config_mod

    path = _config_path(args)
    if not path.is_file():
        return {}, None
    config = config_mod.load(path, getattr(args, "org_config", None))
    return dict(config.stage("policy").options), config.project_dir


def _exceptions(args: argparse.Namespace) -> int:
    import datetime as dt

    from tfgov_ci._files import atomic_write_text
    from tfgov_ci.stages.policy import exceptions
    from tfgov_ci.stages.policy.interface import settings

    options, project_dir = _policy_options(args)
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


def _policy(args: argparse.Namespace) -> int:
    from tfgov_ci.stages.policy import replay

    options, project_dir = _policy_options(args)
    if args.policy_command == "test":
        results = replay.run_tests(
            args.directory, options=options, project_dir=project_dir, engine=args.engine
        )
        for case in results:
            print(f"{'PASS' if case.passed else 'FAIL'} {case.name}: {case.detail}")
        failed = sum(1 for case in results if not case.passed)
        print(f"{len(results) - failed} passed, {failed} failed")
        return 1 if failed else EXIT_OK
    decision = replay.evaluate_file(
        args.input_file,
        options=options,
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


def _emit(args: argparse.Namespace) -> int:
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


def _gitlab(args: argparse.Namespace) -> int:
    import os

    from tfgov_ci.ci import gitlab_api

    server = gitlab_api.Server.from_env(os.environ, args.url, args.project)
    if args.gitlab_command == "lint":
        result = gitlab_api.lint(server, args.file, args.ref)
        _warn(result.get("warnings") or [])
        print(f"ok: GitLab says {args.file} is valid ({len(result.get('jobs') or [])} jobs in a dry run)")
        return EXIT_OK
    summary = args.summary
    if summary is None:
        out = getattr(args, "out", None) or _config_path(args).parent / ".tfgov" / "out"
        summary = Path(out) / "policy" / "summary.md"
    if not summary.is_file():
        raise UsageError(
            f"{summary}: no policy summary", "run `tfgov-ci run policy` first, or pass --summary"
        )
    posted, updated = gitlab_api.note(server, args.mr, summary.read_text(encoding="utf-8"), os.environ)
    print(f"{'updated' if updated else 'posted'} the policy summary as note {posted.get('id')}")
    return EXIT_OK


def _jenkins(args: argparse.Namespace) -> int:
    import os

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
