"""Sign and attest with cosign 3, by digest, the image the build pushed by digest (no tag yet).

Order (no tag ever names an unsigned image): the build sends the image to the registry by digest
only (:mod:`tfgov_ci.stages.handoff`); cosign signs that digest and attests the evidence
(provenance, SBOM, scan, policy decision); ``publish`` then points the commit's tags at it.

cosign makes each bundle without uploading it (``--upload=false`` / ``--no-upload``, with
``--bundle FILE``), all of them at once: each process spends most of its time opening the key
(scrypt), and one after another they were most of a warm run. tfgov-ci then stores the bundles
where and as cosign stores them (:func:`tfgov_ci.oci.referrers.attach`): an artifact manifest
each, whose ``subject`` is the image, which the OCI 1.1 referrers API lists; and on a registry
without that API one update of the referrers tag fallback ``sha256-<hex>`` for all of them, where
cosign reads and writes it once a process (so that its processes could not run together).
``cosign verify`` and ``verify-attestation`` read them as their own. The legacy format is
cosign's to write, its ``.sig`` and ``.att`` tags, one process after another.

Options (``stages.sign.options``):

- ``key``: any key reference cosign accepts: a file (relative to tfgov.yaml), ``env://VAR``, or a
  KMS URI (``awskms://``, ``gcpkms://``, ``azurekms://``, ``hashivault://``, ``k8s://``), passed
  through. Default ``env://COSIGN_PRIVATE_KEY``. A key's password comes from ``COSIGN_PASSWORD``
  in the environment, never from tfgov.yaml or a command line.
- ``keyless: true``: no key; cosign signs with the CI's OIDC token (``SIGSTORE_ID_TOKEN``, GitLab
  ``id_tokens``) through the Fulcio and Rekor that ``signing_config`` names (required: the public
  Sigstore too is used only when its signing config is named).
- ``signing_config``: a cosign signing config (a private Rekor, Fulcio, timestamp authority).
  Without one, tfgov-ci writes an empty one: no transparency log, no Fulcio, nothing sent anywhere
  but the registry. The public Rekor is never used by accident.
- ``format``: ``bundle`` (default: cosign 3 bundles, as OCI 1.1 referrers or through the referrers
  tag fallback) or ``legacy`` (the ``sha256-<hex>.sig`` and ``.att`` tags that older admission
  controllers and registries read; no transparency log, so no ``signing_config``).
- ``one_at_a_time``: run the signing processes one after another instead of at once. On by
  itself for a ``pkcs11:`` key (a hardware token may serve one session at a time, and a wrong PIN
  tried by five processes at once spends the token's retries and locks it); set it for a KMS that
  limits its signing requests a second (a Vault with a rate-limit quota, say).
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci import tools
from tfgov_ci.config import Config
from tfgov_ci.context import Context
from tfgov_ci.errors import Problem, StageInputError
from tfgov_ci.oci import referrers
from tfgov_ci.oci.image import rfc3339
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import AUTH_HINT, Registry, registry_refused
from tfgov_ci.pipeline import (
    SIGSTORE_ID_TOKEN,
    STAGES,
    Clock,
    StagePlan,
    StageResult,
    Step,
    passed,
    read_result,
    result_path,
)
from tfgov_ci.predicates import POLICY_PREDICATE, SBOM_PREDICATE, SCAN_PREDICATE, SLSA_PROVENANCE
from tfgov_ci.stages.handoff import BuiltImage
from tfgov_ci.stages.sign.bundles import BUNDLE_MEDIA_TYPE, SIGN_PREDICATE
from tfgov_ci.stages.sign.interface import (
    SignError,
    SigningKeyError,
    evidence,
    predicate_file,
    write_predicates,
)

DEFAULT_KEY = "env://COSIGN_PRIVATE_KEY"
ATTESTED = (SLSA_PROVENANCE, SBOM_PREDICATE, SCAN_PREDICATE, POLICY_PREDICATE)
NO_SERVICES = ("--no-default-fulcio", "--no-default-rekor", "--no-default-tsa", "--no-default-oidc")
_KEY_SCHEMES = ("env://", "awskms://", "gcpkms://", "azurekms://", "hashivault://", "k8s://", "pkcs11:")
_TOKEN = "pkcs11:"  # a hardware token's key: its signing processes run one at a time
SIGNATURE = "sign"  # the commands' name for the image's own signature (the others: predicate types)


def artifact_name(command: str) -> str:
    """What a signing command's bundle is called in a plan and a layout: ``signature``, or the
    predicate's short name (``provenance``, ``sbom``, ``scan``, ``policy``, ``record``)."""
    return "signature" if command == SIGNATURE else command.rsplit("/", 2)[-2]


def bundle_path(work: str, command: str) -> str:
    """Where cosign writes a command's bundle."""
    return f"{work}/{artifact_name(command)}.bundle.json"


class CosignSigner:
    stage: ClassVar[str] = "sign"
    name: ClassVar[str] = "cosign"
    tools: ClassVar[tuple[str, ...]] = ("skopeo", "cosign")

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    # -- what runs ---------------------------------------------------------------------------------

    def _key(self, ctx: Context) -> str | None:
        """The key reference cosign gets; None when keyless."""
        if self.options.get("keyless"):
            return None
        key = str(self.options.get("key", DEFAULT_KEY))
        if key.startswith("env://"):
            # A GitLab file variable holds the path of a file with the key, not the key itself.
            value = os.environ.get(key.removeprefix("env://"), "")
            if value and "\n" not in value and Path(value).is_file():
                return value
        if key.startswith(_KEY_SCHEMES):
            return key
        return str((ctx.config.project_dir / key).resolve())

    @property
    def legacy(self) -> bool:
        """Whether the format is legacy; an option in error (:func:`option_problems`) raises."""
        problems = option_problems(self.options)
        if problems:
            option, problem, hint = problems[0]
            raise SigningKeyError(f"stages.sign.options.{option}: {problem}", hint)
        return bool(self.options.get("format", "bundle") == "legacy")

    def one_at_a_time(self, ctx: Context) -> bool:
        """Whether the signing processes run one after another: the legacy format (cosign reads
        and writes its tags itself), a hardware token's key, or ``one_at_a_time: true``."""
        key = self._key(ctx)
        return self.legacy or self.options.get("one_at_a_time") is True or (key or "").startswith(_TOKEN)

    def preflight(self, config: Config) -> tuple[tuple[Problem, ...], tuple[str, ...]]:
        """The options checked by ``validate``, each problem with its line."""
        problems = tuple(
            config.problem(("stages", "sign", "options", option), problem, hint)
            for option, problem, hint in option_problems(self.options)
        )
        return problems, ()

    def _signing_args(self, ctx: Context, config: str) -> list[str]:
        key = self._key(ctx)
        args = ["--yes", *(["--key", key] if key else [])]
        if self.legacy:
            args += ["--tlog-upload=false", "--use-signing-config=false", "--new-bundle-format=false"]
        else:
            args += ["--signing-config", config]
        if not Registry.of(self._target(ctx), ctx.config.registries).access.tls_verify:
            args.append("--allow-insecure-registry")  # loopback, or registries.HOST.insecure: true
        return args

    def _commands(
        self, ctx: Context, work: str, digest: str, predicates: Mapping[str, str]
    ) -> dict[str, list[str]]:
        """Every cosign command, built once for the plan (placeholders) and the run."""
        attest = self.attest_commands(ctx, work, digest, predicates)
        config = attest.pop("signing-config", None)
        target = self._target(ctx)
        keep = [] if self.legacy else ["--upload=false", "--bundle", bundle_path(work, SIGNATURE)]
        args = self._signing_args(ctx, self._config(ctx, work))
        sign = ["cosign", "sign", *args, *keep, f"{target}@{digest}"]
        return {**({"signing-config": config} if config else {}), SIGNATURE: sign, **attest}

    def attest_commands(
        self, ctx: Context, work: str, digest: str, predicates: Mapping[str, str]
    ) -> dict[str, list[str]]:
        """The commands that attest each predicate (type -> file) about ``digest``, after the signing
        config they need; the record stage attests the build record through this too. Bundles are
        written into ``work``, for :meth:`execute` to store."""
        target = self._target(ctx)
        config = self._config(ctx, work)
        args = self._signing_args(ctx, config)
        out = {}
        if "signing_config" not in self.options and not self.legacy:
            # No service at all, said explicitly: the public Sigstore only ever when its config is named.
            out["signing-config"] = ["cosign", "signing-config", "create", *NO_SERVICES, "--out", config]
        for kind, path in predicates.items():
            keep = [] if self.legacy else ["--no-upload", "--bundle", bundle_path(work, kind)]
            out[kind] = [
                "cosign", "attest", *args, *keep, "--type", kind, "--predicate", path, f"{target}@{digest}"
            ]  # fmt: skip
        return out

    def store_steps(self, ctx: Context, commands: Mapping[str, Any]) -> tuple[Step, ...]:
        """The plan's steps that store the bundles of ``commands`` (signing-config aside) beside
        the image, as :meth:`execute` does; none for the legacy format (cosign stores those)."""
        if self.legacy:
            return ()
        target = self._target(ctx)
        names = [artifact_name(name) for name in commands if name != "signing-config"]
        pushes = {name: f"push the {name} bundle as an artifact whose subject is the image" for name in names}
        calls = referrers.attach_calls(
            Registry.of(target, ctx.config.registries), target, pushes, "<build digest>"
        )
        return tuple(Step(c.description, c.argv, c.tool, c.optional) for c in calls)

    def usable_key(self, ctx: Context) -> str | None:
        """The key reference (None: keyless) once it is known to be there: a missing key file or
        variable, or keyless without the CI's token, is a clear error before cosign starts (which
        would otherwise ask for a password or open a browser)."""
        key = self._key(ctx)
        if key is not None and not key.startswith(_KEY_SCHEMES) and not Path(key).is_file():
            raise SigningKeyError(
                f"no signing key at {key}",
                "set stages.sign.options.key to a cosign key file, env://VAR or a KMS URI "
                "(`cosign generate-key-pair` makes one)",
            )
        if key is None and not os.environ.get(SIGSTORE_ID_TOKEN):
            raise SigningKeyError(
                f"keyless signing needs the CI's OIDC token in {SIGSTORE_ID_TOKEN}",
                "GitLab: the template's sign and record jobs get it (id_tokens; input sigstore-audience); "
                "Jenkins: set sigstoreIdTokenCredentialsId to an OpenID Connect id-token credential",
            )
        if key is not None and key.startswith("env://") and not os.environ.get(key.removeprefix("env://")):
            raise SigningKeyError(
                f"no signing key: {key.removeprefix('env://')} is not set",
                "put the private key in that variable (a masked CI variable or Jenkins credential), "
                "or set stages.sign.options.key",
            )
        return key

    def execute(
        self,
        ctx: Context,
        commands: Mapping[str, list[str]],
        work: str,
        image: BuiltImage,
        *,
        stage: str = "sign",
    ) -> None:
        """Run the cosign commands with the registry's credentials and CA, the key's password
        redacted: the signing config first, then every signing command (at once, unless
        :meth:`one_at_a_time`), and store their bundles (in ``work``) beside the image; for legacy,
        cosign's own uploads.
        ``stage``: the stage running them (sign, record), as a refusal says what to run again."""
        stored = _stored(stage)
        self.usable_key(ctx)
        target = self._target(ctx)
        registry = Registry.of(target, ctx.config.registries)
        # before cosign runs: a CI job handed the image by digest reads it from the registry, and
        # a registry it cannot read then fails before five cosign processes, not after
        subject = image.subject(ctx)
        secrets = (*registry.access.secrets, os.environ.get("COSIGN_PASSWORD", ""))
        signing = [name for name in commands if name != "signing-config"]
        with registry.access.docker_config() as env:
            environment = {**os.environ, **env}

            def cosign(name: str) -> None:
                done = tools.run(commands[name], env=environment, secrets=secrets, check=False, timeout=600)
                if done.returncode != 0:
                    raise _failure(done, name, registry.host, stored if self.legacy else None)

            if "signing-config" in commands:
                cosign("signing-config")
            if self.one_at_a_time(ctx):
                for name in signing:
                    cosign(name)
            else:
                tools.together([functools.partial(cosign, name) for name in signing], tools.cores())
        if self.legacy:  # cosign stored the .sig and .att tags itself
            return
        created = rfc3339(int(time.time()))  # when it was signed, as cosign annotates its own
        artifacts = [_bundle(name, Path(bundle_path(work, name)), created) for name in signing]
        referrers.attach(
            target,
            subject,
            artifacts,
            ctx.config.registries,
            stored=stored,
            step="storing the bundles",
        )

    def _config(self, ctx: Context, work: str) -> str:
        given = self.options.get("signing_config")
        return (
            str((ctx.config.project_dir / str(given)).resolve()) if given else f"{work}/signing-config.json"
        )

    @staticmethod
    def _target(ctx: Context) -> Reference:
        remote = ctx.images().remote
        if remote is None:
            raise SigningKeyError(
                "signing needs the image in a registry: tfgov.yaml sets no image.registry",
                "set image.registry (cosign signs an image in a registry, by digest)",
            )
        return remote

    # -- plan and run --------------------------------------------------------------------------------

    def plan(self, ctx: Context) -> StagePlan:
        if ctx.images().remote is None:
            return StagePlan(
                stage=self.stage,
                backend=self.name,
                available=True,
                summary=STAGES[self.stage].summary,
                tools=self.tools,
                steps=(
                    Step("nothing to sign: no image.registry, the image stays in a local layout, UNSIGNED"),
                ),
                notes=("cosign signs an image in a registry: set image.registry",),
            )
        predicates = {kind: f"<temporary dir>/{predicate_file(i, kind)}" for i, kind in enumerate(ATTESTED)}
        commands = self._commands(ctx, "<temporary dir>", "<build digest>", predicates)
        what = {
            "signing-config": "an empty signing config: no transparency log, no Fulcio (air-gapped)",
            SIGNATURE: "sign the image by digest"
            + (
                ""
                if self.legacy
                else " (this and the attestations one after another, each bundle kept in a file)"
                if self.one_at_a_time(ctx)
                else " (this and the attestations at once, each bundle kept in a file)"
            ),
            SLSA_PROVENANCE: "attest the SLSA v1 provenance",
            SBOM_PREDICATE: "attest the SBOM (its digest: the document travels beside the image)",
            SCAN_PREDICATE: "attest the scan result",
            POLICY_PREDICATE: "attest the policy decision",
        }
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=self.tools,
            steps=(
                Step(
                    "the image the build pushed by digest (no tag names it yet: none names an unsigned "
                    "image), read from the build's result"
                ),
                Step("the provenance, SBOM, scan and policy predicates, from the earlier stages' results"),
                *(Step(what[name], (*argv,), "cosign") for name, argv in commands.items()),
                *self.store_steps(ctx, commands),
            ),
            inputs=tuple(str(result_path(ctx.out_dir, s)) for s in ("build", "sbom", "scan", "policy")),
            outputs=(str(result_path(ctx.out_dir, self.stage)),),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        image = BuiltImage.read(ctx)
        read_result(ctx, "policy")  # passed, for this very commit and configuration, or nothing is signed
        if ctx.images().remote is None:  # a laptop's local layout: nothing to sign, and said every time
            return passed(
                ctx,
                self.stage,
                self.name,
                clock,
                "UNSIGNED: no image.registry",
                data={"signed": False, "digest": image.digest},
                warnings=("UNSIGNED: the image stays in a local OCI layout; set image.registry to sign it",),
            )
        target = self._target(ctx)
        registry = Registry.of(target, ctx.config.registries)
        key = self.usable_key(ctx)
        if image.pushed != str(_at(target, image.digest)):
            raise StageInputError(
                f"the build did not push {image.digest} to {target.registry}/{target.repository}"
                + (f" (it pushed {image.pushed})" if image.pushed else ""),
                "run the build stage again with this tfgov.yaml: it pushes the image by digest",
            )
        with tempfile.TemporaryDirectory(prefix="tfgov-sign.") as tmp:
            predicates = write_predicates(Path(tmp), evidence(ctx, image, plan_pipeline(ctx)))
            commands = self._commands(ctx, tmp, image.digest, {k: str(v) for k, v in predicates.items()})
            self.execute(ctx, commands, tmp, image)
        attested = [{"predicate_type": kind, "predicate": predicates[kind].name} for kind in ATTESTED]
        reference = f"{target.registry}/{target.repository}@{image.digest}"
        warnings = (
            []
            if "signing_config" in self.options
            else [
                "no transparency log: the signatures are verified with the key alone (air-gapped; "
                "set stages.sign.options.signing_config for a private Rekor)"
            ]
        )
        return passed(
            ctx,
            self.stage,
            self.name,
            clock,
            f"{reference} signed, {len(attested)} attestations",
            data={
                "signed": True,
                "reference": reference,
                "digest": image.digest,
                "key": key if key is None or key.startswith(_KEY_SCHEMES) else Path(key).name,
                "keyless": key is None,
                "transparency_log": "configured" if "signing_config" in self.options else "none",
                "format": "legacy" if self.legacy else "bundle",
                "attestations": attested,
                "tags_pushed": [],
            },
            warnings=(*registry.warnings, *warnings),
        )


def option_problems(options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """What is wrong with the sign stage's options, each as (option, problem, hint): ``validate``
    says them all with their lines, the stage refuses to plan with the first."""
    given, one_by_one = options.get("format", "bundle"), options.get("one_at_a_time", False)
    checks = [
        (given not in ("bundle", "legacy"), "format", f"{given!r} is not a signature format",
         "use bundle (cosign 3, the default) or legacy (.sig/.att tags)"),
        (bool(options.get("keyless")) and "signing_config" not in options, "keyless",
         "keyless signing needs a signing_config naming its Fulcio and Rekor",
         "tfgov-ci never reaches the public Sigstore by accident: for it, write its signing config "
         "(`cosign signing-config create --with-default-services`) and name that file"),
        (given == "legacy" and "signing_config" in options, "signing_config",
         "format legacy takes no signing_config",
         "legacy signatures are stored without a transparency log; drop one of the two"),
        (not isinstance(one_by_one, bool), "one_at_a_time", f"{one_by_one!r} is not true or false",
         "set it to true to run cosign's signing processes one after another"),
    ]  # fmt: skip
    return [(option, problem, hint) for wrong, option, problem, hint in checks if wrong]


def plan_pipeline(ctx: Context) -> str:
    """The pipeline's name, as the provenance's external parameter."""
    from tfgov_ci.pipeline import load_pipeline

    return load_pipeline(ctx.config.pipeline, ctx.config.project_dir).name


def _at(target: Reference, digest: str) -> Reference:
    return Reference(target.registry, target.repository, None, digest)


def _bundle(command: str, path: Path, created: str) -> referrers.Artifact:
    """A bundle cosign wrote, as the artifact cosign itself pushes (its ``WriteReferrer``)."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise SignError(f"cosign wrote no bundle at {path} ({exc.strerror})", "see cosign's output") from None
    return referrers.Artifact(
        artifact_name(command),
        BUNDLE_MEDIA_TYPE,
        BUNDLE_MEDIA_TYPE,
        content,
        {
            "org.opencontainers.image.created": created,
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": SIGN_PREDICATE if command == SIGNATURE else command,
        },
        typed_config=True,
    )


def _stored(stage: str) -> referrers.Stored:
    """What ``stage`` stores, as a registry's refusal of it is said: sign runs before any tag; the
    record stage after publish has set them."""
    then = (
        "nothing was tagged, run sign again"
        if stage == "sign"
        else f"the tags publish set stand, the {stage} stage's attestation is not stored: run {stage} again"
    )
    return referrers.Stored("the signature or an attestation", "the signatures and attestations", then)


def _failure(done: tools.Completed, step: str, host: str, stored: referrers.Stored | None) -> SignError:
    """What went wrong in one cosign process. ``stored``: what it writes to the registry (the
    legacy format); a bundle-making process only reads it, so a refusal then is a read's."""
    text = done.stderr.lower()
    if "decrypt" in text or "password" in text or "incorrect passphrase" in text:
        return SigningKeyError(
            "cosign could not open the signing key (wrong password?)",
            "COSIGN_PASSWORD must be the key's password; it is read from the environment only",
        )
    said = None if stored is None else referrers.refusal(done.stderr, host, step, stored)
    if said is None and registry_refused(done.stderr, host):
        said = (f"authentication to {host} failed (cosign reading the image: {step})", AUTH_HINT)
    if said is not None:
        return SignError.of_run(done, *said)
    return SignError.of_run(done, f"cosign failed ({step})", "see cosign's output below")
