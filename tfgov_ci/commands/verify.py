"""``tfgov-ci verify IMAGE``: may this image run? Its signature and evidence, checked by digest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.commands import config_path
from tfgov_ci.errors import EXIT_GATE, EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "verify",
        parents=[common(out_dir=False)],
        help="may this image run? its signature and evidence, by digest",
        description="Resolve IMAGE (REGISTRY/REPO:TAG or @sha256:...) to a digest once and check, "
        "against that digest, its signature, every attestation's signature and subject, the "
        "provenance's builder and external parameters, the base, the stored SBOM against the "
        "attested one, and the attested policy decision. Exit 0: allowed; 1: denied.",
    )
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("--key", required=True, metavar="KEY", help="the public key (a file, or a KMS URI)")
    parser.add_argument("--repo", metavar="URL", help="the repository URL the provenance must name")
    parser.add_argument("--commit", metavar="SHA", help="the commit the provenance must name")
    parser.add_argument("--branch", metavar="NAME", help="the branch the provenance must name")
    parser.add_argument(
        "--config-path", dest="expected_config", metavar="PATH", help="the tfgov.yaml path it must name"
    )
    parser.add_argument(
        "--trusted-builder",
        action="append",
        metavar="ID",
        help="a builder.id to trust (repeatable; default: tfgov-ci on GitLab and on Jenkins)",
    )
    parser.add_argument(
        "--allowed-base", action="append", metavar="REGISTRY/REPO", help="an allowed base (repeatable)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci import config as config_mod
    from tfgov_ci.stages.sign.verify import TRUSTED_BUILDERS, Expected, render, verify

    path = config_path(args)
    registries = config_mod.load(path, getattr(args, "org_config", None)).registries if path.is_file() else {}
    expected = Expected(
        repository=args.repo,
        commit=args.commit,
        branch=args.branch,
        config=args.expected_config,
        builders=tuple(args.trusted_builder or TRUSTED_BUILDERS),
        bases=tuple(args.allowed_base or ()),
    )
    key = args.key if "://" in args.key else str(Path(args.key).resolve())
    verdict = verify(args.image, key, expected, registries)
    if args.format == "json":
        print(json.dumps(verdict.to_json(), indent=2))
    else:
        print("\n".join(render(verdict)))
    return EXIT_OK if verdict.allowed else EXIT_GATE
