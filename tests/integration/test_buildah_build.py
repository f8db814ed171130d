"""The buildah backend: a team's Dockerfile, built on the pinned base, same result contract."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import (
    CliResult,
    extract_image,
    git,
    make_repo,
    plan_is_what_ran,
    require_tools,
    run_in_rootfs,
)
from tests.integration.test_native_build import APP, model_config
from tests.services import BuiltBase
from tfgov_ci.testing.registry import LocalRegistry

DOCKERFILE = """# FROM is replaced by the pinned central base; USER root is overridden by tfgov.yaml
FROM tensorflow/tensorflow:2.21.0
WORKDIR /app
COPY app.py .
USER root
CMD ["python3", "app.py"]
"""


@pytest.fixture
def docker_project(
    tmp_path: Path, small_base: BuiltBase, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> Path:
    require_tools("buildah")
    config = model_config(small_base.ref, session_registry.host, "  build:\n    backend: buildah\n").replace(
        "files: [app.py, data]", "files: [app.py]"
    )
    repo = make_repo(
        tmp_path / "hello",
        {
            "tfgov.yaml": config,
            "requirements.txt": "",
            "app.py": APP.replace("import yaml\n", "").replace(
                'print("hello from", yaml.__name__, yaml.__version__, "on", sys.version.split()[0])',
                'print("hello from buildah on", sys.version.split()[0])',
            ),
            "Dockerfile": DOCKERFILE,
        },
    )
    for stage in ("validate", "lock"):
        assert cli("run", stage, cwd=repo).code == 0
    git(repo, "add", "requirements.lock", "requirements.lock.tree.json")
    git(repo, "commit", "-qm", "lock")
    return repo


def test_buildah_builds_the_dockerfile_on_the_pinned_base_as_the_configured_user(
    docker_project: Path, small_base: BuiltBase, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    for stage in ("validate", "lock", "build"):
        result = cli("run", stage, cwd=docker_project)
        assert result.code == 0, result.err
    build = json.loads((docker_project / ".tfgov/out/build/result.json").read_text())
    data = build["data"]
    sha = git(docker_project, "rev-parse", "HEAD")
    assert build["backend"] == "buildah"
    assert data["tags"] == [sha, sha[:8], "main"]
    assert data["base"]["digest"] == small_base.digest
    assert data["labels"]["org.opencontainers.image.revision"] == sha
    rootfs = tmp_path / "rootfs"
    config = extract_image(Path(build["outputs"]["layout"]), sha, rootfs)
    inner = config["config"]
    assert isinstance(inner, dict)
    assert inner["User"] == "65532:65532"  # the Dockerfile's USER root did not win
    assert inner["Labels"]["org.opencontainers.image.base.digest"] == small_base.digest
    assert not (rootfs / "bin/sh").exists()  # it is the distroless base, not tensorflow/tensorflow
    done = run_in_rootfs(rootfs, ["/usr/bin/python3", "/app/app.py"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hello from buildah on 3.11")
    ran = plan_is_what_ran(docker_project, ["validate", "lock", "build"])
    assert [c[0] for c in ran["build"][-5:]] == ["skopeo", "buildah", "buildah", "buildah", "skopeo"]
    assert [c[7] for c in ran["build"][-4:-1]] == ["bud", "push", "rmi"]  # after buildah's storage options
    assert ran["build"][-1][-1].startswith("docker://")  # then pushed by digest, for the later stages


def test_docker_builds_the_same_dockerfile_with_the_same_contract(
    docker_project: Path,
    small_base: BuiltBase,
    docker_engine: str,
    tmp_path: Path,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine)
    text = (docker_project / "tfgov.yaml").read_text().replace("backend: buildah", "backend: docker")
    (docker_project / "tfgov.yaml").write_text(text)
    git(docker_project, "commit", "-qam", "docker backend")
    for stage in ("validate", "lock", "build"):
        result = cli("run", stage, cwd=docker_project)
        assert result.code == 0, result.err
    build = json.loads((docker_project / ".tfgov/out/build/result.json").read_text())
    data = build["data"]
    sha = git(docker_project, "rev-parse", "HEAD")
    assert build["backend"] == "docker"
    assert data["dockerfile_from_replaced"] == ["tensorflow/tensorflow:2.21.0"]
    assert data["tags"] == [sha, sha[:8], "main"]
    rootfs = tmp_path / "rootfs"
    config = extract_image(Path(build["outputs"]["layout"]), sha, rootfs)
    inner = config["config"]
    assert isinstance(inner, dict)
    assert inner["User"] == "65532:65532"
    assert inner["Labels"]["org.opencontainers.image.revision"] == sha
    done = run_in_rootfs(rootfs, ["/usr/bin/python3", "/app/app.py"])
    assert done.returncode == 0, done.stderr
    ran = plan_is_what_ran(docker_project, ["validate", "lock", "build"])
    # The base into the engine, the image out of it: skopeo; the build itself goes through the SDK.
    assert [c[3] for c in ran["build"][-3:-1]] == ["--dest-daemon-host", "--src-daemon-host"]
    assert ran["build"][-1][-1].startswith("docker://")  # then pushed by digest, for the later stages
    assert done.stdout.startswith("hello from buildah on 3.11")  # the same app, another builder


def test_every_from_naming_an_image_is_pinned_to_the_base_but_stages_are_kept() -> None:
    from tfgov_ci.stages.build.docker import pin_from_lines

    text, replaced = pin_from_lines(
        "FROM python:3.11 AS build\nRUN make\nFROM --platform=linux/amd64 build AS again\nFROM scratch\n", "B"
    )
    assert text == "FROM B AS build\nRUN make\nFROM --platform=linux/amd64 build AS again\nFROM B\n"
    assert replaced == ["python:3.11", "scratch"]


def test_drift_catches_what_a_dockerfile_installed_beside_the_lock(
    tmp_path: Path, pip_base: str, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> None:
    """The Dockerfile pip-installs an unlocked package, skips the locked one, and drops a loose file."""
    import subprocess
    import sys

    from tests.integration.test_native_build import model_config

    require_tools("buildah", "syft")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(wheels),
            "six==1.17.0",
        ],
        check=True,
    )
    wheel = next(wheels.glob("six-*.whl"))
    dockerfile = f"""FROM scratch
COPY {wheel.name} /tmp/
RUN ["/usr/bin/python3", "-m", "pip", "install", "--break-system-packages", "--no-index", "--no-deps", \
     "/tmp/{wheel.name}"]
RUN ["/usr/bin/python3", "-c", "open('/tmp/fetched-tool', 'w').write('binary')"]
COPY app.py /app/
"""
    repo = make_repo(
        tmp_path / "drifty",
        {
            "tfgov.yaml": model_config(
                pip_base, session_registry.host, "  build:\n    backend: buildah\n"
            ).replace("files: [app.py, data]", "files: [app.py]"),
            "requirements.txt": "PyYAML==6.0.2\n",
            "app.py": "print('hi')\n",
            "Dockerfile": dockerfile,
        },
    )
    (repo / wheel.name).write_bytes(wheel.read_bytes())
    assert cli("lock", cwd=repo).code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lock and wheel")
    for stage in ("validate", "lock", "build", "sbom"):
        result = cli("run", stage, cwd=repo)
        assert result.code == 0, result.err
    drift = json.loads((repo / ".tfgov/out/sbom/result.json").read_text())["data"]["drift"]
    found = {(f["kind"], f["subject"]) for f in drift["findings"]}
    assert ("unlocked", "six") in found
    assert ("missing", "pyyaml") in found
    assert ("unowned-file", "/tmp/fetched-tool") in found
    assert ("unowned-file", "/etc/hosts") not in found  # a runtime-managed file, not drift
    assert not any(kind == "unlocked" and name in ("pip", "setuptools", "wheel") for kind, name in found)
    assert "drift: six 1.17.0 is in the image but not in the lock" in result.err  # said, every time


SCRIPT_STEP = """FROM tensorflow/tensorflow:2.21.0
WORKDIR /app
COPY app.py setup.sh ./
RUN ["/app/setup.sh"]
CMD ["python3", "app.py"]
"""
SHELL_STEP = SCRIPT_STEP.replace('RUN ["/app/setup.sh"]', "RUN python3 -c 'print(1)'")


def _with_dockerfile(repo: Path, text: str) -> None:
    (repo / "Dockerfile").write_text(text)
    (repo / "setup.sh").write_text("#!/bin/sh\necho set up\n")
    (repo / "setup.sh").chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a Dockerfile with a step the base cannot run")


def test_a_failed_buildah_step_names_the_step_its_line_and_the_likely_cause(
    docker_project: Path, cli: Callable[..., CliResult]
) -> None:
    """A script whose #! names a shell: preflight cannot see inside it, the real build fails."""
    _with_dockerfile(docker_project, SCRIPT_STEP)
    for stage in ("validate", "lock"):  # nothing preflight can see
        assert cli("run", stage, cwd=docker_project).code == 0
    result = cli("run", "build", cwd=docker_project)
    assert result.code == 3, result.err
    first = next(line for line in result.err.splitlines() if line.startswith("error: "))
    assert first.startswith("error: buildah build failed at step `RUN /app/setup.sh` (Dockerfile:4): "), (
        result.err
    )
    assert "/app/setup.sh is not in the pinned base, or it is a script whose #! line names" in first
    assert "/usr/bin/python3 script.py" in first  # the hint
    assert "  | " in result.err  # buildah's own words follow


@pytest.mark.parametrize("backend", ["buildah", "docker"])
def test_a_shell_form_step_that_reaches_the_builder_is_explained_with_its_line(
    docker_project: Path,
    backend: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., CliResult],
) -> None:
    """Preflight refuses this Dockerfile, so the backend is called as a build whose validate was
    skipped would call it (an older job, a plug-in's pipeline): the real builder's real words
    (`exec: "/bin/sh": stat /bin/sh: no such file or directory`) are what gets explained."""
    from tfgov_ci import config as config_mod
    from tfgov_ci.context import discover
    from tfgov_ci.pipeline import backend_class
    from tfgov_ci.stages.build.interface import BuildError

    if backend == "docker":
        monkeypatch.setenv("DOCKER_HOST", request.getfixturevalue("docker_engine"))
    text = (docker_project / "tfgov.yaml").read_text().replace("backend: buildah", f"backend: {backend}")
    (docker_project / "tfgov.yaml").write_text(text)
    _with_dockerfile(docker_project, SCRIPT_STEP)
    for stage in ("validate", "lock"):  # for this commit; then the bad step
        assert cli("run", stage, cwd=docker_project).code == 0
    (docker_project / "Dockerfile").write_text(SHELL_STEP)
    config = config_mod.load(docker_project / "tfgov.yaml")
    ctx = discover(config, (docker_project / ".tfgov/out").resolve(), allow_dirty=True)
    cls = backend_class("build", backend)
    assert cls is not None
    builder = cls(config.stage("build").options)
    with pytest.raises(BuildError) as caught:
        builder.run(ctx, builder.plan(ctx))
    message = caught.value.message
    assert "build failed at step `RUN python3 -c 'print(1)'` (Dockerfile:4): " in message, message
    assert "/bin/sh is not in the pinned base (distroless: no shell, by design)" in message
    assert "exec form" in (caught.value.hint or "")
    assert "/bin/sh" in caught.value.stderr_tail  # the builder's own words are kept
