"""The lock (uv) and build (native) stages on a real base, from a real registry."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import CliResult, extract_image, git, make_repo, plan_is_what_ran, run_in_rootfs
from tests.services import BuiltBase, SigningKey
from tfgov_ci.oci.registry import push_layout
from tfgov_ci.testing.registry import LocalRegistry
from tfgov_ci.wheels import Target, manylinux_platforms

APP = """import sys
import yaml
print("hello from", yaml.__name__, yaml.__version__, "on", sys.version.split()[0])
"""


# Offline scanning for the tests that only need a policy decision before publish: the osv matcher
# on one advisory that matches nothing here (test_scan_policy.py scans with trivy and real advisories).
OFFLINE_SCAN = "  scan:\n    backend: osv\n    options: {advisories: advisories}\n"
UNRELATED_ADVISORY = """id: PYSEC-2099-1
affected:
- package: {name: not-in-the-image, ecosystem: PyPI}
  ranges:
  - type: ECOSYSTEM
    events: [{introduced: "0"}, {fixed: "1.0"}]
"""


def model_config(base_ref: str, registry: str | None, stages: str = "") -> str:
    """tfgov.yaml of the test model; ``stages`` adds rows under ``stages:`` (indented two spaces)."""
    host = base_ref.split("/", 1)[0]
    reg = f"  registry: {registry}\n" if registry else ""
    return f"""version: 1
image:
  name: hello
{reg}  repository: ml/hello
base:
  image: {base_ref}
  allowed_registries: [{host}]
runtime: {{python: "3.11", tensorflow: "2.21.0"}}
app:
  files: [app.py, data]
  entrypoint: [python3, app.py]
  env: {{GREETING: hi}}
stages:
{OFFLINE_SCAN}{stages}"""


def locked_model(
    cli: Callable[..., CliResult], folder: Path, config: str, files: Mapping[str, str] | None = None
) -> Path:
    """The test model (PyYAML, app.py, data/) with ``config`` as its tfgov.yaml, plus ``files``:
    locked with `tfgov-ci lock` and committed."""
    repo = make_repo(
        folder,
        {
            "tfgov.yaml": config,
            "requirements.txt": "PyYAML==6.0.2\n",
            "app.py": APP,
            "data/labels.txt": "a\n",
            **(files or {}),
        },
    )
    assert cli("lock", cwd=repo).code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lock")
    return repo


@pytest.fixture
def model(
    tmp_path: Path,
    small_base: BuiltBase,
    session_registry: LocalRegistry,
    can_sign: SigningKey,
    cli: Callable[..., CliResult],
) -> Path:
    """A model repository on the small base, locked (requirements: PyYAML) and committed; the
    session's signing key in the environment, as a CI job has it."""
    repo = make_repo(
        tmp_path / "hello",
        {
            "tfgov.yaml": model_config(small_base.ref, session_registry.host),
            "requirements.txt": "PyYAML==6.0.2\n",
            "app.py": APP,
            "data/labels.txt": "a\nb\n",
            "advisories/PYSEC-2099-1.yaml": UNRELATED_ADVISORY,
        },
    )
    assert cli("run", "validate", cwd=repo).code == 0
    locked = cli("run", "lock", cwd=repo)
    assert locked.code == 0, locked.err
    git(repo, "add", "requirements.lock", "requirements.lock.tree.json")
    git(repo, "commit", "-qm", "lock")
    return repo


def build(cli: Callable[..., CliResult], repo: Path) -> dict[str, object]:
    """validate, lock (a no-op on a committed, current lock: the tree stays clean), build."""
    assert cli("run", "validate", cwd=repo).code == 0
    locked = cli("run", "lock", cwd=repo)
    assert locked.code == 0, locked.err
    result = cli("run", "build", cwd=repo)
    assert result.code == 0, result.err
    data: dict[str, object] = json.loads((repo / ".tfgov/out/build/result.json").read_text())
    return data


def govern(cli: Callable[..., CliResult], repo: Path) -> None:
    """The evidence stages between build and sign: sbom, scan (offline), policy."""
    for stage in ("sbom", "scan", "policy"):
        result = cli("run", stage, cwd=repo)
        assert result.code == 0, f"{stage}: {result.err}"


def publish(cli: Callable[..., CliResult], repo: Path) -> CliResult:
    """sign (the image by digest, its evidence attested), then publish (the tags): its result."""
    signed = cli("run", "sign", cwd=repo)
    assert signed.code == 0, signed.err
    return cli("run", "publish", cwd=repo)


def test_the_lock_has_exact_versions_and_hashes_for_the_base_python(model: Path) -> None:
    text = (model / "requirements.lock").read_text()
    assert "pyyaml==6.0.2" in text.lower()
    assert "--hash=sha256:" in text
    assert "x86_64-manylinux_2_36" in text.splitlines()[0]


def test_native_build_makes_a_labelled_non_root_image_that_runs(
    model: Path, small_base: BuiltBase, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    result = build(cli, model)
    data = result["data"]
    assert isinstance(data, dict)
    sha = git(model, "rev-parse", "HEAD")
    assert data["tags"] == [sha, sha[:8], "main"]
    labels = data["labels"]
    assert labels["org.opencontainers.image.revision"] == sha
    assert labels["org.opencontainers.image.base.digest"] == small_base.digest
    assert labels["io.tfgov.lock.digest"].startswith("sha256:")
    for key in ("source", "created", "version", "title", "base.name"):
        assert f"org.opencontainers.image.{key}" in labels
    assert [layer["what"].split(":")[1].split()[0] for layer in data["layers"]] == ["wheels", "app"]

    rootfs = tmp_path / "rootfs"
    config = extract_image(Path(result["outputs"]["layout"]), sha, rootfs)  # type: ignore[index]
    assert config["config"]["User"] == "65532:65532"  # type: ignore[index]
    assert "GREETING=hi" in config["config"]["Env"]  # type: ignore[index]
    assert (rootfs / "app/data/labels.txt").read_text() == "a\nb\n"
    done = run_in_rootfs(rootfs, ["/usr/bin/python3", "/app/app.py"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hello from yaml 6.0.2 on 3.11")


def test_two_builds_of_one_commit_in_two_folders_at_two_times_give_one_digest(
    model: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    one, two = tmp_path / "clone-one", tmp_path / "clone-two"
    git(model, "clone", "-q", str(model), str(one))
    first = build(cli, one)
    time.sleep(1.1)
    git(model, "clone", "-q", str(model), str(two))
    os.utime(two / "app.py", (1, 1))  # another checkout: other file times, other folder
    second = build(cli, two)
    assert first["data"]["digest"] == second["data"]["digest"]  # type: ignore[index]


def test_a_code_change_rebuilds_only_the_app_layer(model: Path, cli: Callable[..., CliResult]) -> None:
    before = build(cli, model)["data"]
    (model / "app.py").write_text(APP + "print('changed')\n")
    git(model, "commit", "-qam", "code only")
    after = build(cli, model)["data"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert before["digest"] != after["digest"]
    assert before["layers"][0]["digest"] == after["layers"][0]["digest"]
    assert after["layers"][0]["cached"] is True
    assert before["layers"][1]["digest"] != after["layers"][1]["digest"]


def test_a_special_file_in_the_app_is_refused(model: Path, cli: Callable[..., CliResult]) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(model / "data" / "agent.sock"))
    try:
        for stage in ("validate", "lock"):
            assert cli("run", stage, "--allow-dirty", cwd=model).code == 0
        result = cli("run", "build", "--allow-dirty", cwd=model)
        assert result.code == 2
        assert "data/agent.sock is a special file" in result.err
    finally:
        sock.close()


def test_a_lock_edited_after_the_lock_stage_is_refused(model: Path, cli: Callable[..., CliResult]) -> None:
    for stage in ("validate", "lock"):
        assert cli("run", stage, cwd=model).code == 0
    (model / "requirements.lock").write_text("pyyaml==6.0.2\n")  # between two CI jobs, say
    result = cli("run", "build", "--allow-dirty", cwd=model)
    assert result.code == 2
    assert "requirements.lock changed after the lock stage wrote it" in result.err


def test_a_lock_without_hashes_or_pins_is_refused_with_its_lines(tmp_path: Path) -> None:
    from tfgov_ci.wheels import LockError, parse_lock

    lock = tmp_path / "requirements.lock"
    lock.write_text("pyyaml==6.0.2\nsix>=1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n")
    with pytest.raises(LockError) as raised:
        parse_lock(lock)
    assert f"{lock}:1: pyyaml has no --hash" in raised.value.message
    assert f"{lock}:2: 'six>=1.0' is not pinned with ==" in raised.value.message


TARGET = Target(
    "3.11",
    tuple(manylinux_platforms((2, 36))),
    "/usr/local/lib/python3.11/dist-packages",
    "/usr/local/bin",
    "/usr/bin/python3.11",
)


def test_a_wheel_whose_hash_differs_from_the_lock_is_refused(tmp_path: Path) -> None:
    from tfgov_ci.wheels import Locked, WheelCache, WheelError

    target = TARGET
    with pytest.raises(WheelError, match="does not match the lock's hash"):
        WheelCache(tmp_path / "wheels").fetch([Locked("six", "1.17.0", ("1" * 64,), 1)], target)
    assert not list((tmp_path / "wheels").glob("*/*.whl"))  # nothing half-trusted left in the cache


def test_a_package_without_a_wheel_for_the_platform_names_both(tmp_path: Path) -> None:
    from tfgov_ci.wheels import Locked, WheelCache, WheelError

    target = TARGET
    # tensorflow-cpu 2.21.0 publishes no wheel for CPython 3.9
    old = Target("3.9", target.platforms, target.site_packages, target.scripts_dir, target.executable)
    with pytest.raises(
        WheelError, match=r"no wheel of tensorflow-cpu==2\.21\.0 for Python 3\.9 on manylinux_2_36_x86_64"
    ):
        WheelCache(tmp_path / "wheels").fetch([Locked("tensorflow-cpu", "2.21.0", ("2" * 64,), 1)], old)


def test_a_base_that_does_not_exist_is_a_clear_error(
    model: Path, small_base: BuiltBase, cli: Callable[..., CliResult]
) -> None:
    text = (model / "tfgov.yaml").read_text().replace(small_base.digest, "sha256:" + "e" * 64)
    (model / "tfgov.yaml").write_text(text)
    git(model, "commit", "-qam", "wrong base")
    assert cli("run", "validate", cwd=model).code == 0
    result = cli("run", "lock", cwd=model)
    assert result.code == 2
    assert "not found" in result.err


def test_the_build_pushes_by_digest_publish_tags_it_the_branch_tag_moves_and_commit_tags_do_not(
    model: Path, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> None:
    from tfgov_ci.oci.reference import parse
    from tfgov_ci.oci.registry import Access, Registry, remote_digest

    first = build(cli, model)["data"]
    access = Access(session_registry.host, False, None, None)
    repository = f"{session_registry.host}/ml/hello"
    sha = git(model, "rev-parse", "HEAD")
    assert first["pushed"] == f"{repository}@{first['digest']}"  # type: ignore[index]
    registry = Registry(access)
    assert registry.digest_of(parse(str(first["pushed"]))) == first["digest"]  # type: ignore[index]
    refused = cli("run", "publish", cwd=model)
    assert refused.code == 2 and "no result of stage 'policy'" in refused.err  # nothing unchecked is tagged
    govern(cli, model)
    published = publish(cli, model)
    assert published.code == 0, published.err
    for tag in (sha, sha[:8], "main"):
        assert remote_digest(repository, tag, access) == first["digest"]  # type: ignore[index]

    (model / "app.py").write_text(APP + "print('v2')\n")
    git(model, "commit", "-qam", "v2")
    second = build(cli, model)["data"]
    govern(cli, model)
    assert publish(cli, model).code == 0
    assert remote_digest(repository, "main", access) == second["digest"]  # type: ignore[index]
    assert remote_digest(repository, sha, access) == first["digest"]  # type: ignore[index]
    record = json.loads((model / ".tfgov/out/record.json").read_text())
    assert [s["status"] for s in record["stages"] if s["stage"] in ("build", "publish")] == [
        "passed",
        "passed",
    ]
    ran = plan_is_what_ran(model, ["validate", "lock", "build", "sbom", "scan", "policy", "sign", "publish"])
    assert ran["validate"] == []  # in-process
    # uv resolved for the fixture; the lock has not changed since: kept, uv not run again.
    assert [c[:3] for c in ran["lock"]] == [["skopeo", "inspect", "--config"]]
    assert ran["build"][0] == ["git", "status", "--porcelain", "--", str(model / "requirements.lock")]
    by_digest = f"docker://{repository}@{second['digest']}"
    assert ran["build"][-1][-1] == by_digest and ran["build"][-1][1] == "copy"  # the build's last command
    # sign signs what the build pushed: its skopeo calls store the bundles (a temporary layout's
    # artifacts and the referrers tag), never the image again
    copies = [c for c in ran["sign"] if c[:2] == ["skopeo", "copy"]]
    assert copies and all(
        "oci:" in c[-2] and ":sha256-" not in c[-2] and "/tfgov-referrers." in c[-2] for c in copies
    )
    second_sha = git(model, "rev-parse", "HEAD")
    copies = [c[-2:] for c in ran["publish"] if c[1] == "copy"]
    # the SBOMs first (two artifacts and the referrers tag), then each tag, registry to registry
    # (none named this digest yet)
    assert all("/tfgov-referrers." in source for source, _ in copies[:3])
    assert copies[3:6] == [
        [by_digest, f"docker://{repository}:{tag}"] for tag in (second_sha, second_sha[:8], "main")
    ]


def test_without_a_registry_publish_fills_the_local_oci_layout(
    model: Path, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> None:
    text = (model / "tfgov.yaml").read_text().replace(f"  registry: {session_registry.host}\n", "")
    (model / "tfgov.yaml").write_text(text)
    git(model, "commit", "-qam", "no registry")
    data = build(cli, model)["data"]
    govern(cli, model)
    result = publish(cli, model)
    assert result.code == 0, result.err
    index = json.loads((model / ".tfgov/oci/index.json").read_text())
    names = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    sha = git(model, "rev-parse", "HEAD")
    assert names[f"ml/hello:{sha}"] == data["digest"]  # type: ignore[index]
    assert "no registry configured" in result.err


def test_a_corrupted_base_blob_in_the_cache_is_detected_and_not_used(
    model: Path, small_base: BuiltBase, cli: Callable[..., CliResult]
) -> None:
    from tests.services import SHARED_CACHE
    from tfgov_ci.oci.layout import Layout

    build(cli, model)  # the base is in the cache now
    cache = Layout.open(SHARED_CACHE / "base")
    manifest = cache.read_json(small_base.digest)
    blob = cache.blob_path(manifest["layers"][0]["digest"])
    original = blob.read_bytes()
    try:
        blob.chmod(0o644)
        blob.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        result = cli("run", "build", cwd=model)
        assert result.code == 3
        assert "is corrupted" in result.err and "was not used" in result.err
    finally:
        blob.write_bytes(original)


def test_sbom_lists_the_debian_and_python_packages_annotated_with_provenance(
    model: Path, small_base: BuiltBase, cli: Callable[..., CliResult]
) -> None:
    data = build(cli, model)["data"]
    result = cli("run", "sbom", cwd=model)
    assert result.code == 0, result.err
    sbom = json.loads((model / ".tfgov/out/sbom/result.json").read_text())
    spdx = json.loads(Path(sbom["outputs"]["spdx"]).read_text())
    cyclonedx = json.loads(Path(sbom["outputs"]["cyclonedx"]).read_text())
    assert spdx["spdxVersion"] == "SPDX-2.3" and cyclonedx["bomFormat"] == "CycloneDX"
    names = {p["name"] for p in spdx["packages"]}
    assert {"pyyaml", "python3.11-minimal", "libc6"} <= names
    assert not any(str(model) in name for name in names)  # named after the image, not a build path
    sha = git(model, "rev-parse", "HEAD")
    assert f"commit={sha}" in spdx["creationInfo"]["comment"]
    properties = {p["name"]: p["value"] for p in cyclonedx["metadata"]["properties"]}
    assert properties["tfgov:image"].endswith(f"@{data['digest']}")  # type: ignore[index]
    assert properties["tfgov:lock"] == data["lock_digest"]  # type: ignore[index]
    assert sbom["data"]["by_type"]["deb"] >= 30 and sbom["data"]["by_type"]["pypi"] == 1
    assert sbom["data"]["drift"] == {"findings": [], "counts": {}}  # the native image is what the lock says


def test_the_lock_comes_with_its_dependency_tree(model: Path) -> None:
    import jsonschema

    from tfgov_ci import _resources

    tree = json.loads((model / "requirements.lock.tree.json").read_text())
    jsonschema.validate(tree, _resources.schema("dependency-tree"))
    assert tree["roots"] == ["pyyaml"]
    assert tree["packages"]["pyyaml"] == {"version": "6.0.2", "required_by": []}


def test_lock_check_passes_on_a_current_lock_and_fails_on_a_stale_one_writing_nothing(
    model: Path, cli: Callable[..., CliResult]
) -> None:
    ok = cli("lock", "--check", cwd=model)
    assert ok.code == 0, ok.err
    assert "is current" in ok.out
    (model / "requirements.txt").write_text("PyYAML==6.0.2\nsix==1.17.0\n")
    before = (model / "requirements.lock").read_text()
    stale = cli("lock", "--check", cwd=model)
    assert stale.code == 1
    assert "requirements.lock is stale: + six==1.17.0" in stale.err
    assert (model / "requirements.lock").read_text() == before
    assert cli("lock", cwd=model).code == 0
    assert "six==1.17.0" in (model / "requirements.lock").read_text()


def test_an_unchanged_lock_is_kept_without_uv_until_an_input_changes_or_the_window_ends(
    model: Path, cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfgov_ci import tools

    monkeypatch.setenv("TFGOV_CACHE_DIR", str(tmp_path / "cache"))  # no resolution kept yet
    lock, config = model / "requirements.lock", (model / "tfgov.yaml").read_text()
    committed = lock.read_text()

    def lock_stage() -> tuple[list[str], dict[str, object]]:
        """The lock stage run once: the tools it ran, and its result's data."""
        for stage in ("validate", "lock"):
            result = cli("run", stage, cwd=model)
            assert result.code == 0, result.err
        found = json.loads((model / ".tfgov/out/lock/result.json").read_text())
        return [c["argv"][0] for c in found["commands"]], found["data"]

    def newest() -> Path:
        return max((tmp_path / "cache/lock").glob("*.json"), key=lambda path: path.stat().st_mtime_ns)

    plan = cli("plan", "--format", "json", cwd=model)
    (step,) = [s for stage in json.loads(plan.out)["stages"] for s in stage["steps"] if s["tool"] == "uv"]
    assert step["optional"] and "when the same inputs were resolved to it within 24 h" in step["description"]
    assert lock_stage()[0] == ["skopeo", "uv"]  # nothing kept: resolved, and kept
    tools_ran, data = lock_stage()
    assert tools_ran == ["skopeo"] and data["reused_from"] == json.loads(newest().read_text())["resolved_at"]
    assert lock.read_text() == committed
    for asked in (("lock",), ("lock", "--check")):  # asked for a lock: always resolved
        with tools.recording() as ran:
            assert cli(*asked, cwd=model).code == 0
        assert [c.argv[0] for c in ran] == ["skopeo", "uv"], asked

    lock.write_text(committed + "# edited\n")  # not what the kept resolution wrote
    assert lock_stage()[0] == ["skopeo", "uv"] and lock.read_text() == committed
    monkeypatch.setenv("UV_RESOLUTION", "highest")  # one of uv's settings
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))  # uv's own folder: still kept
    (tmp_path / "uv-cache").mkdir()
    assert lock_stage()[0] == ["skopeo", "uv"]
    assert lock_stage()[0] == ["skopeo"]
    monkeypatch.setenv("UV_FIND_LINKS", str(tmp_path))  # a folder of wheels: resolved every run
    assert lock_stage()[0] == ["skopeo", "uv"]
    assert lock_stage()[0] == ["skopeo", "uv"]
    monkeypatch.delenv("UV_FIND_LINKS")
    (model / "uv.toml").write_text('resolution = "highest"\n')  # one of uv's configuration files
    assert lock_stage()[0] == ["skopeo", "uv"]

    entry = newest()  # the window ends: the resolution just kept, made 25 hours ago
    kept = json.loads(entry.read_text())
    made = datetime.fromisoformat(kept["resolved_at"]) - timedelta(hours=25)
    entry.write_text(json.dumps({**kept, "resolved_at": made.isoformat()}))
    assert lock_stage()[0] == ["skopeo", "uv"]
    (model / "tfgov.yaml").write_text(
        config.replace("stages:\n", "stages:\n  lock:\n    options: {reuse_hours: 0}\n")
    )
    assert lock_stage()[0] == ["skopeo", "uv"]
    (model / "tfgov.yaml").write_text(
        config.replace("stages:\n", "stages:\n  lock:\n    options: {reuse_hours: soon}\n")
    )
    refused = cli("run", "validate", cwd=model)
    assert refused.code == 2
    line = config.splitlines().index("stages:") + 3  # the options line, under stages: and lock:
    assert (
        f"tfgov.yaml:{line}: stages.lock.options.reuse_hours: 'soon' is not a number of hours" in refused.err
    )

    (model / "tfgov.yaml").write_text(config)
    (model / "requirements.txt").write_text("PyYAML==6.0.2\nsix==1.17.0\n")
    assert lock_stage()[0] == ["skopeo", "uv"] and "six==1.17.0" in lock.read_text()
    (model / "pins.txt").write_text("six==1.17.0\n")
    (model / "requirements.txt").write_text("PyYAML==6.0.2\nsix\n-c pins.txt\n")  # names another file
    assert lock_stage()[0] == ["skopeo", "uv"]
    assert lock_stage()[0] == ["skopeo", "uv"]


def test_unsatisfiable_requirements_pass_on_uvs_explanation(
    model: Path, cli: Callable[..., CliResult]
) -> None:
    (model / "requirements.txt").write_text("PyYAML==6.0.2\npyyaml>=7\n")
    result = cli("lock", cwd=model)
    assert result.code == 2
    assert "the requirements cannot be locked" in result.err
    assert "pyyaml" in result.err.lower() and "Traceback" not in result.err


def test_a_lock_re_resolved_in_the_same_run_must_be_committed_before_it_builds(
    model: Path, cli: Callable[..., CliResult]
) -> None:
    (model / "requirements.txt").write_text("PyYAML==6.0.2\nsix==1.17.0\n")
    git(model, "commit", "-qam", "a new requirement, lock not updated")
    result = cli("run", cwd=model)  # one process: the tree was clean when the run started
    assert result.code == 2
    assert "requirements.lock is not the committed one" in result.err
    record = json.loads((model / ".tfgov/out/record.json").read_text())
    assert [s["status"] for s in record["stages"][:3]] == ["passed", "passed", "error"]


def test_the_same_inputs_lock_to_the_same_bytes_in_any_folder_with_the_base_as_constraint(
    tmp_path: Path, six_base: str, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> None:
    files = {
        "tfgov.yaml": model_config(six_base, session_registry.host),
        "requirements.txt": "six\nPyYAML==6.0.2\n",
        "app.py": APP,
        "data/labels.txt": "a\n",
    }
    texts = []
    for folder in ("one", "elsewhere/two"):
        repo = make_repo(tmp_path / folder, files)
        result = cli("lock", cwd=repo)
        assert result.code == 0, result.err
        texts.append((repo / "requirements.lock").read_text())
        tree = json.loads((repo / "requirements.lock.tree.json").read_text())
        assert tree["roots"] == ["pyyaml", "six"]
    assert texts[0] == texts[1]
    assert "six==1.17.0" in texts[0] and "-c base image packages" in texts[0]
    (tmp_path / "one" / "requirements.txt").write_text("six>=1.18\n")
    refused = cli("lock", cwd=tmp_path / "one")
    assert refused.code == 2
    assert "the base pins six 1.17.0; requirements.txt asks for >=1.18" in refused.err


def test_pip_tools_locks_what_uv_locks_with_the_base_as_constraint_and_builds(
    tmp_path: Path, six_base: str, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> None:
    """The pip-tools backend (its host is the base's Python and platform here) against uv."""
    from tfgov_ci.wheels import parse_lock

    files = {"requirements.txt": "six\nPyYAML==6.0.2\n", "app.py": APP, "data/labels.txt": "a\n"}
    locks = {}
    for backend in ("uv", "pip-tools"):
        stages = f"  lock:\n    backend: {backend}\n"
        repo = make_repo(
            tmp_path / backend, {**files, "tfgov.yaml": model_config(six_base, session_registry.host, stages)}
        )
        result = cli("lock", cwd=repo)
        assert result.code == 0, result.err
        text = (repo / "requirements.lock").read_text()
        assert f"# Written by `tfgov-ci run lock` ({backend}) for Python 3.11" in text
        assert "-c base image packages" in text and "/tmp" not in text
        locks[backend] = {
            (r.name, r.version, tuple(sorted(r.hashes))) for r in parse_lock(repo / "requirements.lock")
        }
        assert json.loads((repo / "requirements.lock.tree.json").read_text())["roots"] == ["pyyaml", "six"]
    assert locks["pip-tools"] == locks["uv"]  # the same versions, and every file's hash, either way
    git(tmp_path / "pip-tools", "add", "-A")
    git(tmp_path / "pip-tools", "commit", "-qm", "lock")
    built = build(cli, tmp_path / "pip-tools")
    assert built["data"]["installed"] == ["pyyaml==6.0.2"]  # six comes from the base
    ran = plan_is_what_ran(tmp_path / "pip-tools", ["lock", "build"])
    assert ran["lock"][1][0] == "pip-compile"  # as the plan names it; piptools ran
    (tmp_path / "pip-tools" / "requirements.txt").write_text("six>=1.18\n")
    refused = cli("lock", cwd=tmp_path / "pip-tools")
    assert refused.code == 2 and "the base pins six 1.17.0; requirements.txt asks for >=1.18" in refused.err


def test_two_pipelines_of_one_commit_build_one_digest_and_both_publish(
    model: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retried GitLab pipeline: another pipeline id, the same commit. The pipeline id is in the
    build record, not in the image, so the digest is the same and the second publish finds the
    commit's tags already naming it (no --force-retag)."""
    monkeypatch.setenv("GITLAB_CI", "true")
    digests, records = [], []
    for pipeline_id in ("1001", "1002"):
        monkeypatch.setenv("CI_PIPELINE_ID", pipeline_id)
        monkeypatch.setenv(
            "CI_PIPELINE_URL", f"https://gitlab.example.com/ml/hello/-/pipelines/{pipeline_id}"
        )
        shutil.rmtree(model / ".tfgov" / "out", ignore_errors=True)
        digests.append(build(cli, model)["data"]["digest"])  # type: ignore[index]
        govern(cli, model)
        published = publish(cli, model)
        assert published.code == 0, published.err
        records.append(json.loads((model / ".tfgov/out/record.json").read_text()))
    assert digests[0] == digests[1]
    assert [r["ci"]["pipeline_id"] for r in records] == ["1001", "1002"]
    second = json.loads((model / ".tfgov/out/publish/result.json").read_text())
    sha = git(model, "rev-parse", "HEAD")
    assert sorted(second["data"]["already_there"]) == sorted([sha, sha[:8], "main"])


def test_a_later_stage_reads_the_build_from_where_the_out_directory_is_now(
    model: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """In CI the out directory travels between jobs as an artifact, and a later job may unpack it
    under another path: the built image is read from this out directory, not from the path the
    build job wrote in its result."""
    build(cli, model)
    moved = tmp_path / "artifact" / "out"
    moved.parent.mkdir()
    (model / ".tfgov" / "out").rename(moved)
    result = cli("--out", str(moved), "run", "sbom", cwd=model)
    assert result.code == 0, result.err
    sbom = json.loads((moved / "sbom" / "result.json").read_text())
    assert not (model / ".tfgov" / "out").exists()  # the path the build wrote is gone: read from here
    assert (
        sbom["data"]["digest"] == json.loads((moved / "build" / "result.json").read_text())["data"]["digest"]
    )
    assert all(str(moved) in " ".join(c["argv"]) for c in sbom["commands"])


def test_later_stages_read_the_image_the_build_pushed_when_the_out_directory_has_no_layout(
    model: Path, tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later CI job is handed results, not layers: the layout gone and a cache of its own (a new
    runner), each stage reads the image from the registry by digest, and the SBOM is the same."""
    first = build(cli, model)["data"]
    govern(cli, model)
    before = json.loads((model / ".tfgov/out/sbom/sbom.spdx.json").read_text())
    shutil.rmtree(model / ".tfgov/out/build/oci")
    runner = tmp_path / "runner-cache"
    monkeypatch.setenv("TFGOV_CACHE_DIR", str(runner))
    for stage in ("sbom", "scan", "policy", "sign", "publish"):
        result = cli("run", stage, cwd=model)
        assert result.code == 0, f"{stage}: {result.err}"
    sbom = json.loads((model / ".tfgov/out/sbom/result.json").read_text())
    catalogue = sbom["data"]["catalogue"]
    assert (catalogue["method"], catalogue["cached"]) == ("layers", 0)  # every layer fetched, catalogued
    fetched = {p.name for p in (runner / "images/blobs/sha256").iterdir()}
    manifest = json.loads((runner / "images/blobs/sha256" / str(first["digest"]).split(":")[1]).read_text())  # type: ignore[index]
    assert {layer["digest"].split(":")[1] for layer in manifest["layers"]} <= fetched
    after = json.loads((model / ".tfgov/out/sbom/sbom.spdx.json").read_text())
    assert sorted(p["SPDXID"] for p in after["packages"]) == sorted(p["SPDXID"] for p in before["packages"])
    assert not (model / ".tfgov/out/build/oci").exists()
    plan_is_what_ran(model, ["sbom", "scan", "policy", "sign", "publish"])


def test_publish_attaches_the_sboms_and_sbom_fetch_finds_them_again_by_digest(
    model: Path, session_registry: LocalRegistry, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    data = build(cli, model)["data"]
    govern(cli, model)
    published = publish(cli, model)
    assert published.code == 0, published.err
    result = json.loads((model / ".tfgov/out/publish/result.json").read_text())
    assert [s["format"] for s in result["data"]["sboms"]] == ["cyclonedx", "spdx"]
    assert "application/vnd.goharbor.harbor.sbom.v1" in {s["artifact_type"] for s in result["data"]["sboms"]}
    repository = f"{session_registry.host}/ml/hello"
    spdx_file = tmp_path / "fetched.spdx.json"
    by_tag = cli("sbom", "fetch", f"{repository}:main", "--output", str(spdx_file), cwd=tmp_path)
    assert by_tag.code == 0, by_tag.err
    local = (model / ".tfgov/out/sbom/sbom.spdx.json").read_bytes()
    assert spdx_file.read_bytes() == local
    by_digest = cli("sbom", "fetch", f"{repository}@{data['digest']}", "--format", "cyclonedx", cwd=tmp_path)
    assert by_digest.code == 0, by_digest.err
    assert json.loads(by_digest.out)["bomFormat"] == "CycloneDX"
    # a second publish of the same image keeps one index, listing the newer SBOMs too
    govern(cli, model)
    assert publish(cli, model).code == 0
    missing = cli("sbom", "fetch", f"{session_registry.host}/ml/none:main", cwd=tmp_path)
    assert missing.code == 3 and "no image" in missing.err


def test_sbom_from_the_registry_with_credentials_finds_the_same_packages(
    tmp_path: Path, small_base: BuiltBase, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfgov_ci.testing.registry import LocalRegistry as Registry

    with Registry(user="ci-bot", password="s3cret-Pa55") as private:
        monkeypatch.setenv("TFGOV_REGISTRY_USER", "ci-bot")
        monkeypatch.setenv("TFGOV_REGISTRY_PASSWORD", "s3cret-Pa55")
        config = model_config(small_base.ref, private.host, "  sbom:\n    options: {source: registry}\n")
        repo = locked_model(cli, tmp_path / "hello", config)
        built = build(cli, repo)
        # pushed by the library: the sbom stage then reads the image back from the registry
        images = [f"{private.host}/ml/hello"]
        push_layout(
            repo / ".tfgov/out/build/oci",
            built["data"]["tags"][0],
            built["data"]["digest"],
            images[0],
            tuple(built["data"]["tags"]),
            {},
            env=os.environ,
        )
        result = cli("run", "sbom", cwd=repo)
        assert result.code == 0, result.err
        assert "s3cret" not in result.err + result.out
        sbom = json.loads((repo / ".tfgov/out/sbom/result.json").read_text())
        assert sbom["data"]["by_type"]["pypi"] == 1 and sbom["data"]["by_type"]["deb"] >= 30
