"""SBOMs with syft, from the build's OCI layout: SPDX 2.3 and CycloneDX JSON, written whole.

Each document is annotated with where the image came from (SPDX ``creationInfo.comment``,
CycloneDX ``metadata.properties``: commit, image digest, lock digest), and named after the image
(``--source-name``/``--source-version``), never after a path on the build machine.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci import tools
from tfgov_ci._files import TOOL_VERSIONS, atomic_write_json, cache_dir
from tfgov_ci.context import Context
from tfgov_ci.oci.registry import access
from tfgov_ci.pipeline import STAGES, Clock, StagePlan, StageResult, Step, passed, result_path
from tfgov_ci.stages.handoff import BuiltImage, ImageSource, hands_off, pushed_at
from tfgov_ci.stages.sbom import drift, layers
from tfgov_ci.stages.sbom.interface import SbomError
from tfgov_ci.wheels import parse_lock

SPDX_FILE = "sbom.spdx.json"
CATALOGUE_FILE = "sbom.syft.json"  # syft's own JSON, which both documents are written from
CYCLONEDX_FILE = "sbom.cdx.json"


def summarise(cyclonedx: dict[str, Any]) -> dict[str, Any]:
    """Packages by type (the purl type: deb, pypi, ...) and the licences the SBOM names."""
    by_type: Counter[str] = Counter()
    licenses: set[str] = set()
    for component in cyclonedx.get("components", []):
        purl = component.get("purl", "")
        by_type[purl.split(":", 1)[1].split("/", 1)[0] if purl.startswith("pkg:") else "other"] += 1
        for entry in component.get("licenses", []):
            license_ = entry.get("license", {})
            name = license_.get("id") or license_.get("name") or entry.get("expression")
            if name:
                licenses.add(name)
    return {
        "packages": sum(by_type.values()),
        "by_type": dict(sorted(by_type.items())),
        "licenses": sorted(licenses),
    }


class SyftSbom:
    stage: ClassVar[str] = "sbom"
    name: ClassVar[str] = "syft"
    tools: ClassVar[tuple[str, ...]] = ("syft",)

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def _from_registry(self, source: ImageSource | None) -> bool:
        """Whether syft reads the whole image from the registry: with ``options.source: registry``,
        or where the out directory does not hold the layout (a later CI job: the build pushed it)."""
        return self.options.get("source", "layout") == "registry" or (source is not None and not source.local)

    def _registry_source(self, ctx: Context, digest: str) -> tuple[str, dict[str, str], tuple[str, ...]]:
        """The pushed image by digest, with the registry's CA and credentials (in syft's environment)."""
        remote = hands_off(ctx)
        if remote is None:
            raise SbomError("stages.sbom.options.source: registry needs image.registry", "set image.registry")
        reach = access(remote.registry, ctx.config.registries, os.environ)
        return f"registry:{pushed_at(ctx, digest)}", reach.syft_env(), reach.secrets

    def plan(self, ctx: Context) -> StagePlan:
        out = result_path(ctx.out_dir, self.stage).parent
        layout = BuiltImage.layout_path(ctx)
        catalogue = f"{out}/<temporary dir>/{CATALOGUE_FILE}"
        repository = ctx.images().repository
        # The whole image, when the layers cannot be merged: from the layout where this out
        # directory holds it, else from the registry the build pushed it to.
        sources = (
            [] if self.options.get("source", "layout") == "registry" else [(f"oci-dir:{layout}", "layout")]
        )
        if hands_off(ctx) is not None:
            sources.append((self._registry_source(ctx, "<build digest>")[0], "registry, by digest"))
        elif not sources:
            self._registry_source(ctx, "<build digest>")  # the error: source registry needs a registry
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=self.tools,
            steps=(
                Step(
                    "read the image from the build's layout, or, where this out directory does not hold "
                    "it, the layers not catalogued before from the registry, by digest (each checked)"
                ),
                Step(
                    "catalogue each layer syft has not catalogued before, alone (cached by its diff id: "
                    "a code change catalogues the app layer only; skipped when every layer is cached)",
                    tuple(_layer_argv("<one-layer layout>", "<layer catalogue>")),
                    "syft",
                    optional=True,
                ),
                Step(
                    "merge the layers' catalogues into the image's, or, where that cannot be trusted (a layer"
                    " deletes or replaces another's files; the result says why), catalogue the whole image"
                ),
                *(
                    Step(
                        f"catalogue the whole image from the {where} (only when the layers' catalogues "
                        "cannot be merged)",
                        tuple(self._whole_argv(source, repository, "<build digest>", catalogue)),
                        "syft",
                        optional=True,
                    )
                    for source, where in sources
                ),
                Step(
                    "write the catalogue as SPDX 2.3 and CycloneDX",
                    tuple(
                        _convert_argv(
                            catalogue,
                            f"{out}/<temporary dir>/{SPDX_FILE}",
                            f"{out}/<temporary dir>/{CYCLONEDX_FILE}",
                        )
                    ),
                    "syft",
                ),
                Step("annotate both documents with commit, image digest and lock digest"),
                Step(
                    "catalogue the base alone, its layers of the image, once per base digest (only when "
                    "their catalogues cannot be merged; skipped when cached)",
                    tuple(_base_argv("<temporary layout>", "<temporary dir>/sbom.cdx.json")),
                    "syft",
                    optional=True,
                ),
                Step("drift: the image's Python packages and files against the lock and the base's packages"),
            ),
            inputs=(str(result_path(ctx.out_dir, "build")), str(layout) + " (or the registry)"),
            outputs=(
                str(out / SPDX_FILE),
                str(out / CYCLONEDX_FILE),
                str(result_path(ctx.out_dir, self.stage)),
            ),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        image = BuiltImage.read(ctx)
        digest, lock = image.digest, image.lock_digest
        out = result_path(ctx.out_dir, self.stage).parent
        out.mkdir(parents=True, exist_ok=True)
        repository = ctx.images().repository
        image_source = image.source(ctx)
        layout = image_source.layout
        if self._from_registry(image_source):
            source, registry_env, secrets = self._registry_source(ctx, digest)
        else:
            source, registry_env, secrets = f"oci-dir:{layout.path}", {}, ()
        with tempfile.TemporaryDirectory(prefix=".sbom.", dir=out) as tmp:
            work = Path(tmp)
            catalogue_file = work / CATALOGUE_FILE
            cache = layers.Cache(cache_dir(), _syft_version())
            layered = layers.Layers(layout, digest, cache, image_source.fetch)
            if self.options.get("source", "layout") == "registry":
                how = "whole image, from the registry (stages.sbom.options.source: registry)"
                catalogue: dict[str, Any] | layers.Untrusted = layers.Untrusted(how)
            else:
                catalogue = layered.catalogue(
                    str(layout.path), repository, digest, image.base_layers, _catalogue_layer
                )
            if isinstance(catalogue, layers.Untrusted):
                argv = self._whole_argv(source, repository, digest, str(catalogue_file))
                done = tools.run(
                    argv, env={**_env(), **registry_env}, secrets=secrets, check=False, timeout=3600
                )
                if done.returncode != 0:
                    raise SbomError.of_run(
                        done, "syft could not catalogue the image", "see syft's output below"
                    )
                method: dict[str, str | None] = {"method": "whole image", "reason": catalogue.reason}
            else:
                atomic_write_json(catalogue_file, catalogue, compact=True)
                method = {"method": "layers", "reason": None}
            spdx_tmp, cdx_tmp = work / SPDX_FILE, work / CYCLONEDX_FILE
            done = tools.run(
                _convert_argv(str(catalogue_file), str(spdx_tmp), str(cdx_tmp)),
                env=_env(),
                check=False,
                timeout=600,
            )
            if done.returncode != 0:
                raise SbomError.of_run(
                    done, "syft could not write the SBOM documents", "see syft's output below"
                )
            spdx = json.loads(spdx_tmp.read_text())
            cyclonedx = json.loads(cdx_tmp.read_text())
        drift_report = self._drift(ctx, image, cyclonedx, layered)
        facts = {"commit": ctx.git.sha, "image": f"{repository}@{digest}", "lock": lock}
        spdx.setdefault("creationInfo", {})["comment"] = "tfgov-ci: " + ", ".join(
            f"{k}={v}" for k, v in facts.items()
        )
        properties = cyclonedx.setdefault("metadata", {}).setdefault("properties", [])
        properties += [{"name": f"tfgov:{key}", "value": value} for key, value in facts.items()]
        # Compact, as syft writes them: indented, they took three times as long to write (0.18 s of
        # the stage's 1.6 s on a warm run of the TensorFlow example) and a third more bytes.
        atomic_write_json(out / SPDX_FILE, spdx, compact=True)
        atomic_write_json(out / CYCLONEDX_FILE, cyclonedx, compact=True)
        summary = {
            **summarise(cyclonedx),
            "image_size": image.size,
            "digest": digest,
            "spdx_version": spdx.get("spdxVersion"),
            "cyclonedx_version": cyclonedx.get("specVersion"),
            "catalogue": {**method, **layered.counts()},
        }
        summary["drift"] = drift_report
        by_type = ", ".join(f"{n} {t}" for t, n in summary["by_type"].items())
        drift_count = len(drift_report["findings"])
        how = (
            f"{layered.counts()['catalogued']} of {len(layered.entries)} layers catalogued, the rest cached"
            if method["method"] == "layers"
            else f"whole image catalogued: {method['reason']}"
        )
        return passed(
            ctx,
            self.stage,
            self.name,
            clock,
            f"{summary['packages']} packages ({by_type}); {drift_count} drift findings; {how}",
            outputs={"spdx": str(out / SPDX_FILE), "cyclonedx": str(out / CYCLONEDX_FILE)},
            data=summary,
            warnings=tuple(f"drift: {f['message']}" for f in drift_report["findings"]),
        )

    def _whole_argv(self, source: str, name: str, version: str, output: str) -> list[str]:
        return [
            "syft",
            "scan",
            source,
            "--quiet",
            "--source-name",
            name,
            "--source-version",
            version,
            "-o",
            f"syft-json={output}",
        ]

    def _drift(
        self, ctx: Context, image: BuiltImage, cyclonedx: dict[str, Any], layered: layers.Layers
    ) -> dict[str, Any]:
        """Compare the image's Python packages with the lock and the base; add the loose files."""
        cfg = ctx.config
        lock = cfg.project_dir / cfg.dependencies.lock
        if not image.base_digest:
            # The central base (or the tools image) has no base under it; the wheels its factory
            # built from this commit's source (io.tfgov.python.built) stand beside the lock's.
            expected = drift.built_packages(image.labels)
        else:
            base = layered.base_artifacts(image.base_layers, _catalogue_layer)
            if base is None:  # the base's own layers cannot be merged: catalogue them whole, once
                base_doc = drift.base_sbom(
                    image.base_digest, cache_dir(), lambda: _catalogue_base(layered, image.base_layers)
                )
                expected = drift.pypi_packages(base_doc)
            else:
                expected = drift.pypi_artifacts(base)
        findings = drift.package_findings(
            drift.pypi_packages(cyclonedx), parse_lock(lock) if lock.is_file() else [], expected
        )
        loose = drift.unowned_files(
            layered.indices()[image.base_layers :] if image.base_layers else [], cfg.app.workdir
        )
        return drift.report(findings + loose)


def _env() -> dict[str, str]:
    """syft's environment: this process's as it is now (not as it was at import), no update check."""
    return {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}


def _syft_version() -> str:
    return tools.versions(["syft"], cache_dir() / TOOL_VERSIONS)["syft"] or "syft"


def _catalogue_layer(layout: Path, output: Path) -> dict[str, Any]:
    """syft's JSON of a one-layer image."""
    done = tools.run(_layer_argv(f"oci-dir:{layout}", str(output)), env=_env(), check=False, timeout=3600)
    if done.returncode != 0:
        raise SbomError.of_run(
            done, "syft could not catalogue a layer of the image", "see syft's output below"
        )
    loaded: dict[str, Any] = json.loads(output.read_text())
    return loaded


def _layer_argv(layout: str, output: str) -> list[str]:
    if not layout.startswith("oci-dir:"):
        layout = f"oci-dir:{layout}"
    return ["syft", "scan", layout, "--quiet", "-o", f"syft-json={output}"]


def _convert_argv(catalogue: str, spdx: str, cyclonedx: str) -> list[str]:
    return [
        "syft",
        "convert",
        catalogue,
        "--quiet",
        "-o",
        f"spdx-json={spdx}",
        "-o",
        f"cyclonedx-json={cyclonedx}",
    ]


def _catalogue_base(layered: layers.Layers, base_layers: int) -> dict[str, Any]:
    """syft's CycloneDX of the image's base: its first layers, as an image of their own."""
    with tempfile.TemporaryDirectory(prefix=".base.", dir=layered.layout.path.parent) as tmp:
        base = layered.base_image(base_layers, Path(tmp) / "oci")
        output = Path(tmp) / "sbom.cdx.json"
        done = tools.run(_base_argv(str(base.path), str(output)), env=_env(), check=False, timeout=3600)
        if done.returncode != 0:
            raise SbomError.of_run(done, "syft could not catalogue the base image")
        loaded: dict[str, Any] = json.loads(output.read_text())
        return loaded


def _base_argv(layout: str, output: str) -> list[str]:
    return [
        "syft",
        "scan",
        f"oci-dir:{layout}",
        "--quiet",
        "--source-name",
        "base",
        "-o",
        f"cyclonedx-json={output}",
    ]
