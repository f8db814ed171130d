"""The build record: ``<out>/record.json``, written at the end of every ``tfgov-ci run``.

It answers "which commit, pipeline, runner and tools made this, and what did each stage do",
from the results on disk, so a CI pipeline whose jobs ran one stage each still gets one record.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import jsonschema

from tfgov_ci import __version__, _resources, tools
from tfgov_ci._files import TOOL_VERSIONS, atomic_write_json, cache_dir
from tfgov_ci.context import Context
from tfgov_ci.errors import ContextError
from tfgov_ci.pipeline import PipelineDef, backend_tools, chosen_backend, describe, now, result_path

RECORD_FILE = "record.json"


def build(ctx: Context, pipeline: PipelineDef) -> dict[str, Any]:
    """The record for this commit: every pipeline stage, from its result file if it has one."""
    stages = []
    statuses = []
    tool_names = {"git"}
    for stage in pipeline.stages:
        backend = chosen_backend(ctx, pipeline, stage)
        tool_names.update(backend_tools(stage, backend))
        entry = _stage_entry(ctx, stage) or {"stage": stage, "backend": backend, "status": "not-run"}
        stages.append(entry)
        statuses.append(entry["status"])
    if all(s == "passed" for s in statuses):
        status = "passed"
    elif "failed" in statuses:
        status = "failed"
    elif any(s in ("error", "not-available") for s in statuses):
        status = "error"
    else:
        status = "incomplete"
    try:
        images = ctx.images()
        image: dict[str, Any] = {"repository": images.repository, "tags": list(images.tags)}
    except ContextError:  # dirty tree without --allow-dirty: no commit tags to record
        image = {"repository": None, "tags": []}
    image["digest"] = _data(ctx, "build").get("digest")
    signed = _data(ctx, "sign")
    described = describe(ctx)
    return {
        "schema_version": 1,
        "created": now(),
        "status": status,
        "tfgov_ci_version": __version__,
        "pipeline": pipeline.name,
        "commit": {
            "sha": ctx.git.sha,
            "short_sha": ctx.git.short_sha,
            "branch": described["branch"],
            "git_tags": list(ctx.git.tags),
            "dirty": ctx.git.dirty,
            "detached": ctx.git.detached,
            "commit_time": ctx.git.commit_time,
            "source_date_epoch": ctx.source_date_epoch,
        },
        "repository_url": described["repository_url"],
        "ci": described["ci"],
        "runner": {
            "host": ctx.host,
            "platform": f"{platform.system()}-{platform.machine()}",
            "python": sys.version.split()[0],
        },
        "tools": tools.versions(sorted(tool_names), cache_dir() / TOOL_VERSIONS),
        "config": {
            "file": str(ctx.config.file),
            "digest": ctx.config.digest,
            "org_file": str(ctx.config.org_file) if ctx.config.org_file else None,
        },
        "image": image,
        **(
            {"evidence": {k: signed[k] for k in ("signed", "reference", "attestations") if k in signed}}
            if signed
            else {}
        ),
        "stages": stages,
    }


def _data(ctx: Context, stage: str) -> dict[str, Any]:
    """A passed result's data for this commit and configuration; {} when there is none."""
    path = result_path(ctx.out_dir, stage)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    same = data.get("commit") == ctx.git.sha and data.get("config_digest") == ctx.config.digest
    found: dict[str, Any] = data.get("data", {}) if same and data.get("status") == "passed" else {}
    return found


def _stage_entry(ctx: Context, stage: str) -> dict[str, Any] | None:
    path = result_path(ctx.out_dir, stage)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("commit") != ctx.git.sha or data.get("config_digest") != ctx.config.digest:
        return None  # another commit's result: not part of this build
    keys = (
        "stage",
        "backend",
        "status",
        "started",
        "finished",
        "duration_s",
        "message",
        "outputs",
        "commands",
    )
    return {key: data[key] for key in keys if key in data}


def write(ctx: Context, record: dict[str, Any]) -> Path:
    jsonschema.Draft202012Validator(_resources.schema("build-record")).validate(record)
    path = ctx.out_dir / RECORD_FILE
    atomic_write_json(path, record)
    return path
