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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci import tools
from tfgov_ci._files import atomic_write_json, cache_dir
from tfgov_ci.context import Context
from tfgov_ci.oci.layout import Descriptor, Layout
from tfgov_ci.oci.registry import access
from tfgov_ci.pipeline import STAGES, Clock, StagePlan, StageResult, Step, passed, result_path
from tfgov_ci.stages.handoff import BuiltImage
from tfgov_ci.stages.sbom import drift
from tfgov_ci.stages.sbom.interface import SbomError
from tfgov_ci.wheels import parse_lock

SPDX_FILE = "sbom.spdx.json"
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

    def _argv(self, source: str, name: str, version: str, spdx: str, cyclonedx: str) -> list[str]:
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
            f"spdx-json={spdx}",
            "-o",
            f"cyclonedx-json={cyclonedx}",
        ]

    def _source(self, ctx: Context, layout: str, digest: str) -> tuple[str, dict[str, str], tuple[str, ...]]:
        """What syft reads: the build's OCI layout (default), or with ``options.source: registry`` the
        pushed image by digest, with the registry's CA and credentials (in syft's environment)."""
        if self.options.get("source", "layout") != "registry":
            return f"oci-dir:{layout}", {}, ()
        remote = ctx.images().remote
        if remote is None:
            raise SbomError("stages.sbom.options.source: registry needs image.registry", "set image.registry")
        reach = access(remote.registry, ctx.config.registries, os.environ)
        return f"registry:{remote}@{digest}", reach.syft_env(), reach.secrets

    def plan(self, ctx: Context) -> StagePlan:
        out = result_path(ctx.out_dir, self.stage).parent
        layout = BuiltImage.layout_path(ctx)
        argv = self._argv(
            self._source(ctx, str(layout), "<build digest>")[0],
            ctx.images().repository,
            "<build digest>",
            f"{out}/<temporary dir>/{SPDX_FILE}",
            f"{out}/<temporary dir>/{CYCLONEDX_FILE}",
        )
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=self.tools,
            steps=(
                Step("catalogue the image's packages", tuple(argv), "syft"),
                Step("annotate both documents with commit, image digest and lock digest"),
                Step(
                    "catalogue the base alone, once per base digest (skipped when cached)",
                    tuple(_base_argv("<temporary layout>", "<temporary dir>/sbom.cdx.json")),
                    "syft",
                    optional=True,
                ),
                Step("drift: the image's Python packages and files against the lock and the base's SBOM"),
            ),
            inputs=(str(result_path(ctx.out_dir, "build")), str(layout)),
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
        env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
        # The file half of the drift check reads the image's own layers while syft works: it needs
        # only the layout, and the two together take about as long as syft alone on two cores.
        layout = Layout.open(image.layout)
        pool = ThreadPoolExecutor(max_workers=1)
        loose_files = pool.submit(
            drift.unowned_files, layout, layout.read_json(digest), image.base_layers, ctx.config.app.workdir
        )
        pool.shutdown(wait=False)
        with tempfile.TemporaryDirectory(prefix=".sbom.", dir=out) as tmp:
            spdx_tmp, cdx_tmp = Path(tmp) / SPDX_FILE, Path(tmp) / CYCLONEDX_FILE
            source, registry_env, secrets = self._source(ctx, str(image.layout), digest)
            argv = self._argv(source, repository, digest, str(spdx_tmp), str(cdx_tmp))
            done = tools.run(argv, env={**env, **registry_env}, secrets=secrets, check=False, timeout=3600)
            if done.returncode != 0:
                raise SbomError.of_run(done, "syft could not catalogue the image", "see syft's output below")
            spdx = json.loads(spdx_tmp.read_text())
            cyclonedx = json.loads(cdx_tmp.read_text())
        drift_report = self._drift(ctx, image, cyclonedx, loose_files.result())
        facts = {"commit": ctx.git.sha, "image": f"{repository}@{digest}", "lock": lock}
        spdx.setdefault("creationInfo", {})["comment"] = "tfgov-ci: " + ", ".join(
            f"{k}={v}" for k, v in facts.items()
        )
        properties = cyclonedx.setdefault("metadata", {}).setdefault("properties", [])
        properties += [{"name": f"tfgov:{key}", "value": value} for key, value in facts.items()]
        atomic_write_json(out / SPDX_FILE, spdx)
        atomic_write_json(out / CYCLONEDX_FILE, cyclonedx)
        summary = {
            **summarise(cyclonedx),
            "image_size": image.size,
            "digest": digest,
            "spdx_version": spdx.get("spdxVersion"),
            "cyclonedx_version": cyclonedx.get("specVersion"),
        }
        summary["drift"] = drift_report
        by_type = ", ".join(f"{n} {t}" for t, n in summary["by_type"].items())
        drift_count = len(drift_report["findings"])
        return passed(
            ctx,
            self.stage,
            self.name,
            clock,
            f"{summary['packages']} packages ({by_type}); {drift_count} drift findings",
            outputs={"spdx": str(out / SPDX_FILE), "cyclonedx": str(out / CYCLONEDX_FILE)},
            data=summary,
            warnings=tuple(f"drift: {f['message']}" for f in drift_report["findings"]),
        )

    def _drift(
        self, ctx: Context, image: BuiltImage, cyclonedx: dict[str, Any], loose_files: list[drift.Finding]
    ) -> dict[str, Any]:
        """Compare the image's Python packages with the lock and the base; add the loose files."""
        cfg = ctx.config
        cache = cache_dir()
        base_doc = (
            drift.base_sbom(cache / "base", image.base_digest, cache, _catalogue_cyclonedx)
            if image.base_digest
            else {"components": []}  # the central base itself: every Python package is the lock's
        )
        lock = cfg.project_dir / cfg.dependencies.lock
        # The central base (or the tools image) has no base under it; the wheels its factory built
        # from this commit's source (io.tfgov.python.built) stand beside the lock's.
        expected = drift.pypi_packages(base_doc) if image.base_digest else drift.built_packages(image.labels)
        findings = drift.package_findings(
            drift.pypi_packages(cyclonedx), parse_lock(lock) if lock.is_file() else [], expected
        )
        return drift.report(findings + loose_files)


def _catalogue_cyclonedx(layout_path: Path, ref: str) -> dict[str, Any]:
    """syft's CycloneDX of one image of a layout (copied alone into a temporary layout first)."""
    source = Layout.open(layout_path)
    descriptor = source.resolve(ref)
    with tempfile.TemporaryDirectory(prefix="tfgov-syft.") as tmp:
        single = Layout.create(Path(tmp) / "oci")
        manifest = source.read_json(descriptor.digest)
        for entry in [manifest["config"], *manifest["layers"]]:
            single.import_blob(source, Descriptor.from_json(entry))
        single.import_blob(source, descriptor)
        single.tag(descriptor, ("image",))
        output = Path(tmp) / "sbom.cdx.json"
        env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
        done = tools.run(_base_argv(str(single.path), str(output)), env=env, check=False, timeout=3600)
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
