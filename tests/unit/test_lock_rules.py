"""What the lock stage refuses before resolving, and the dependency tree it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfgov_ci.stages.lock.interface import LockStageError, check_requirements, compare, dependency_tree
from tfgov_ci.wheels import Locked

BASE = ["tensorflow-cpu==2.21.0", "numpy==2.4.6"]


def _check(tmp_path: Path, text: str, *, allow: bool = False) -> None:
    (tmp_path / "requirements.txt").write_text(text)
    check_requirements(tmp_path / "requirements.txt", BASE, allow_unhashable=allow)


def test_a_requirement_that_would_change_a_base_package_names_both_versions(tmp_path: Path) -> None:
    with pytest.raises(LockStageError) as raised:
        _check(tmp_path, "pandas>=2\ntensorflow-cpu>=2.22\n")
    assert raised.value.exit_code == 2
    assert "requirements.txt:2: the base pins tensorflow-cpu 2.21.0; requirements.txt asks for >=2.22" in (
        raised.value.message
    )


def test_requirements_the_base_satisfies_pass(tmp_path: Path) -> None:
    _check(tmp_path, "# model deps\nTensorflow_CPU==2.21.0  # same as the base\nnumpy\npandas>=2\n")


@pytest.mark.parametrize(
    "line",
    [
        "-e ./mylib",
        "./mylib",
        "mylib @ https://example.com/mylib-1.0.tar.gz",
        "git+https://example.com/mylib.git",
    ],
)
def test_urls_and_local_paths_are_refused_unless_allowed(tmp_path: Path, line: str) -> None:
    with pytest.raises(LockStageError, match="cannot be locked by hash"):
        _check(tmp_path, line + "\n")
    _check(tmp_path, line + "\n", allow=True)


def test_the_tree_says_who_pulled_in_what() -> None:
    lock = """# header
keras==3.15.1 \\
    --hash=sha256:aa
    # via tensorflow-cpu
numpy==2.4.6 \\
    --hash=sha256:bb
    # via
    #   keras
    #   tensorflow-cpu
tensorflow-cpu==2.21.0 \\
    --hash=sha256:cc
    # via -r requirements.txt
"""
    tree = dependency_tree(lock)
    assert tree["roots"] == ["tensorflow-cpu"]
    assert tree["packages"]["numpy"] == {"version": "2.4.6", "required_by": ["keras", "tensorflow-cpu"]}
    assert tree["packages"]["tensorflow-cpu"]["required_by"] == []


def test_compare_lists_added_removed_and_changed_packages() -> None:
    old = [Locked("a", "1", (), 1), Locked("b", "1", (), 2)]
    new = [Locked("a", "2", (), 1), Locked("c", "1", (), 2)]
    assert compare(old, new) == ["+ c==1", "- b==1", "~ a 1 -> 2"]


def test_drift_between_image_lock_and_base_is_a_finding_per_package() -> None:
    from tfgov_ci.stages.sbom.drift import package_findings

    image = {"pyyaml": "6.0.2", "six": "1.17.0", "numpy": "2.0.0", "pip": "23.0.1"}
    locked = [Locked("pyyaml", "6.0.1", (), 1), Locked("requests", "2.0", (), 2)]
    base = {"numpy": "2.4.6", "pip": "23.0.1"}
    found = {(f.kind, f.subject, f.expected, f.found) for f in package_findings(image, locked, base)}
    assert found == {
        ("version", "pyyaml", "6.0.1", "6.0.2"),
        ("unlocked", "six", None, "1.17.0"),
        ("version", "numpy", "2.4.6", "2.0.0"),  # a base package overwritten
        ("missing", "requests", "2.0", None),
    }


def test_pip_tools_refuses_to_lock_for_a_target_it_does_not_run_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip-compile resolves for its own interpreter: another Python, machine or a newer glibc is
    refused with the way out (uv), never a lock for the wrong platform."""
    from types import SimpleNamespace

    from tfgov_ci.stages.lock import interface, pip_tools

    locker = pip_tools.PipToolsLocker({})
    ctx = SimpleNamespace(config=SimpleNamespace(runtime=SimpleNamespace(python="3.11")))
    cases = [
        (("3.11", "manylinux_2_36_x86_64"), None),
        (("3.11", "manylinux_2_31_x86_64"), None),  # an older glibc picks wheels the base can load
        (("3.12", "manylinux_2_36_x86_64"), "Python it runs on (3.12 on manylinux_2_36_x86_64)"),
        (("3.11", "manylinux_2_38_x86_64"), "glibc 2.36 or older"),
        (("3.11", "manylinux_2_36_aarch64"), "not for the base's (Python 3.11 on manylinux_2_36_x86_64)"),
        (("3.11", "darwin_arm64"), "or use stages.lock.backend: uv"),
    ]
    for host, refusal in cases:
        monkeypatch.setattr(pip_tools, "host_target", lambda host=host: host)
        if refusal is None:
            locker._check_target(ctx, "manylinux_2_36_x86_64")  # type: ignore[arg-type]
            continue
        with pytest.raises(interface.LockStageError) as raised:
            locker._check_target(ctx, "manylinux_2_36_x86_64")  # type: ignore[arg-type]
        assert raised.value.exit_code == 2
        assert refusal in raised.value.message + " " + (raised.value.hint or ""), host


def test_reuse_hours_is_a_number_of_hours_from_zero_to_a_year() -> None:
    from tfgov_ci.stages.lock import reuse

    assert reuse.window_problem({}) is None and reuse.window({}) == 24
    assert reuse.window_problem({"reuse_hours": 0}) is None and reuse.window({"reuse_hours": 0}) == 0
    for bad in ("soon", -1, True, None, float("nan"), float("inf"), 1e12):
        assert reuse.window_problem({"reuse_hours": bad}) is not None, bad


def test_requirements_that_name_other_files_urls_or_variables_are_never_kept() -> None:
    from tfgov_ci.stages.lock import reuse

    assert reuse.self_contained("# ours\nPyYAML>=6.0  # config\ntensorflow-cpu==2.21.0\n")
    assert reuse.self_contained("--index-url https://harbor.example.com/pypi/simple\nnumpy\n")
    for line in ("-r more.txt", "-c pins.txt", "--constraint=pins.txt", "-e .", "./wheels/a.whl",
                 "--find-links wheels", "pkg @ https://example.com/pkg.whl", "--index-url ${INDEX}",
                 "numpy==${NUMPY}"):  # fmt: skip
        assert not reuse.self_contained(f"pyyaml\n{line}\n"), line


def test_the_key_leaves_credentials_out_and_names_each_input() -> None:
    from tfgov_ci.stages.lock import reuse

    assert reuse.setting("UV_INDEX_PRIVATE_PASSWORD", "s3cret") is None
    assert reuse.setting("UV_INDEX_URL", "https://ci:job-token@harbor.example.com/simple") == (
        "https://harbor.example.com/simple"
    )
    assert reuse.key({"a": "bc"}) != reuse.key({"ab": "c"})
    assert reuse.key({"a": "1", "b": "2"}) == reuse.key({"b": "2", "a": "1"})


def test_a_kept_resolution_is_found_only_fresh_whole_and_equal_to_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from tfgov_ci.stages.lock import reuse

    monkeypatch.setenv("TFGOV_CACHE_DIR", str(tmp_path / "cache"))
    lock = tmp_path / "requirements.lock"
    lock.write_text("pyyaml==6.0.2\n")
    now = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    assert reuse.keep("k", lock.read_text(), 24, now=now) is None
    assert reuse.found("k", lock, 24, now=now + timedelta(hours=23)) == now.isoformat(timespec="seconds")
    assert reuse.found("k", lock, 24, now=now + timedelta(hours=25)) is None  # the window ended
    assert reuse.found("k", lock, 24, now=now - timedelta(hours=1)) is None  # made in the future
    assert reuse.found("other", lock, 24, now=now) is None
    entry = tmp_path / "cache/lock/k.json"
    for damaged in ('{"resolved_at": "2026-12-03T06:00:00", "text": "pyyaml==6.0.2\\n"}', "{", "[]"):
        entry.write_text(damaged)  # no time zone; not JSON; not an entry
        assert reuse.found("k", lock, 24, now=now) is None
    reuse.keep("k", lock.read_text(), 24, now=now)
    lock.write_text("pyyaml==6.0.2\n# edited\n")
    assert reuse.found("k", lock, 24, now=now) is None
