"""``tfgov-ci verify IMAGE``: may this image run? Its signature and evidence, checked by digest."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci.commands import config_path
from tfgov_ci.errors import EXIT_GATE, EXIT_OK, UsageError

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common
    from tfgov_ci.stages.policy.interface import Module
    from tfgov_ci.stages.sign.verify import Check, Verdict


def add(commands: Commands, common: Common) -> None:
    parser = commands.add_parser(
        "verify",
        parents=[common(out_dir=False)],
        help="may this image run? its signature and evidence, by digest",
        description="Resolve IMAGE (REGISTRY/REPO:TAG or @sha256:...) to a digest once and check, "
        "against that digest, its signature, every attestation's signature and subject, the "
        "provenance's builder and external parameters, the base, the stored SBOM against the "
        "attested one, the attested policy decision, and your own rules (--policy). "
        "Exit 0: allowed; 1: denied.",
    )
    parser.add_argument("image", metavar="IMAGE")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--key", metavar="KEY", help="the public key (a file, or a KMS URI)")
    who.add_argument(
        "--identity", metavar="ID", help="keyless: the signing certificate's identity (with --issuer)"
    )
    parser.add_argument("--issuer", metavar="URL", help="keyless: the OIDC issuer, e.g. https://gitlab.com")
    parser.add_argument(
        "--trusted-root",
        metavar="FILE",
        help="a private Sigstore's trusted_root.json (default: with --key, no transparency log; "
        "keyless, the public Sigstore's root)",
    )
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
    parser.add_argument(
        "--policy",
        action="append",
        metavar="FILE.rego",
        help="your own Rego v1 rules (package tfgov.rules.NAME, deny contains msg) over the attested "
        "documents: input.provenance, .sbom, .scan, .policy, .record, .image (repeatable; a folder too)",
    )
    parser.add_argument(
        "--mirror-of",
        action="append",
        metavar="REGISTRY/REPO",
        help="IMAGE is a mirror of this repository: signatures made for it count (repeatable)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tfgov_ci import config as config_mod
    from tfgov_ci.stages.policy.interface import team_modules
    from tfgov_ci.stages.sign.verify import TRUSTED_BUILDERS, Expected, Trust, render, verify

    if (args.identity is None) != (args.issuer is None):
        raise UsageError("keyless verification needs both --identity and --issuer")
    modules = team_modules([Path(p) for p in args.policy or ()])  # bad rule files: exit 2, up front
    path = config_path(args)
    registries = config_mod.load(path, getattr(args, "org_config", None)).registries if path.is_file() else {}
    expected = Expected(
        repository=args.repo,
        commit=args.commit,
        branch=args.branch,
        config=args.expected_config,
        builders=tuple(args.trusted_builder or TRUSTED_BUILDERS),
        bases=tuple(args.allowed_base or ()),
        mirror_of=tuple(args.mirror_of or ()),
    )
    key = args.key if args.key is None or "://" in args.key else str(Path(args.key).resolve())
    root = str(Path(args.trusted_root).resolve()) if args.trusted_root else None
    trust = Trust(key, args.identity, args.issuer, root)
    verdict = verify(args.image, trust, expected, registries, with_record=bool(modules))
    if modules and verdict.documents:
        verdict = verdict.adding(team_checks(modules, verdict))
    if args.format == "json":
        print(json.dumps(verdict.to_json(), indent=2))
    else:
        print("\n".join(render(verdict)))
    return EXIT_OK if verdict.allowed else EXIT_GATE


def team_checks(modules: Sequence[Module], verdict: Verdict) -> list[Check]:
    """Each of the team's rules over the verified documents: one check a rule, failing closed."""
    from tfgov_ci.stages.policy.interface import evaluate
    from tfgov_ci.stages.policy.regopy import RegopyEngine
    from tfgov_ci.stages.sign.verify import Check

    decision = evaluate(RegopyEngine(), modules, {}, policy_input(verdict), timeout_s=10)
    checks = [
        Check(f"rule {r.name}", r.passed, "passed" if r.passed else r.error or "; ".join(r.denials))
        for r in decision.rules
    ]
    return checks + [Check("rules", False, error) for error in decision.errors]


def policy_input(verdict: Verdict) -> dict[str, Any]:
    """The document team rules read: the image, and each attested predicate by its short name."""
    from tfgov_ci.predicates import (
        POLICY_PREDICATE,
        RECORD_PREDICATE,
        SBOM_PREDICATE,
        SCAN_PREDICATE,
        SLSA_PROVENANCE,
    )

    names = {
        SLSA_PROVENANCE: "provenance",
        SBOM_PREDICATE: "sbom",
        SCAN_PREDICATE: "scan",
        POLICY_PREDICATE: "policy",
        RECORD_PREDICATE: "record",
    }
    document: dict[str, Any] = {"image": {"name": verdict.image, "digest": verdict.digest}}
    document.update({names[kind]: predicate for kind, predicate in verdict.documents.items()})
    return document
