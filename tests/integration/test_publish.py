"""Publishing with skopeo to a real registry: plain, htpasswd, TLS; immutability; failures."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import require_tools
from tests.services import BuiltBase
from tfgov_ci.oci import image as oci_image
from tfgov_ci.oci import reference
from tfgov_ci.oci.layer import LayerBuilder
from tfgov_ci.oci.layout import Layout
from tfgov_ci.oci.registry import Access, Registry, RegistryError, TagConflict, push_layout, remote_digest
from tfgov_ci.testing.registry import LocalRegistry


def tiny_image(folder: Path, text: str, size: int = 0) -> tuple[Path, str, str]:
    """An image of one layer (plus ``size`` random bytes): (layout, ref, manifest digest)."""
    layout = Layout.create(folder)
    builder = LayerBuilder(0)
    builder.add_bytes("hello.txt", text.encode())
    if size:
        blob = os.urandom(size)
        builder.add_bytes("random.bin", blob)
    layer = builder.write(layout, 0 if size else 1)
    config = oci_image.append_layers(
        {"architecture": "amd64", "os": "linux", "config": {}}, [(layer, "test")], 0
    )
    written = oci_image.write_image(layout, config, [layer.descriptor])
    layout.tag(written.manifest, ("v",))
    return folder, "v", written.manifest.digest


def test_push_by_digest_then_tags(registry: LocalRegistry, tmp_path: Path) -> None:
    layout, ref, digest = tiny_image(tmp_path / "a", "one")
    repo = f"{registry.host}/ml/hello"
    pushed = push_layout(layout, ref, digest, repo, ("a" * 40, "aaaaaaaa", "main"), {}, env={})
    assert pushed["reference"] == f"{repo}@{digest}"
    reg = Access(registry.host, False, None, None)
    for tag in ("a" * 40, "aaaaaaaa", "main"):
        assert remote_digest(repo, tag, reg) == digest
    client = Registry(reg)
    assert sorted(client.tags(reference.parse(repo))) == sorted(("a" * 40, "aaaaaaaa", "main"))
    assert client.tags(reference.parse(f"{registry.host}/ml/nothing-here")) == []  # no such repository


def test_a_commit_tag_never_moves_without_force_retag(registry: LocalRegistry, tmp_path: Path) -> None:
    repo = f"{registry.host}/ml/hello"
    first = tiny_image(tmp_path / "a", "one")
    second = tiny_image(tmp_path / "b", "two")
    push_layout(*first, repo, ("c0ffee00",), {}, env={})
    # what runs before the tags (publish attaches the SBOMs there) runs only once none conflicts
    before: list[str | None] = []
    reg = Access(registry.host, False, None, None)
    with pytest.raises(TagConflict) as raised:
        push_layout(*second, repo, ("c0ffee00",), {}, env={}, before_tags=lambda: before.append("ran"))
    assert raised.value.exit_code == 1 and before == []
    push_layout(
        *second, repo, ("v2",), {}, env={}, before_tags=lambda: before.append(remote_digest(repo, "v2", reg))
    )
    assert before == [None]  # it ran, and then no tag named the image yet
    assert first[2] in raised.value.message and second[2] in raised.value.message
    assert remote_digest(repo, "c0ffee00", reg) == first[2]
    # pushing the same image again is fine (a re-run), and --force-retag moves the tag
    assert push_layout(*first, repo, ("c0ffee00",), {}, env={})["already_there"] == ["c0ffee00"]
    moved = push_layout(*second, repo, ("c0ffee00",), {}, env={}, force_retag=True)
    assert moved["retagged"] == ["c0ffee00"]
    assert remote_digest(repo, "c0ffee00", reg) == second[2]


@pytest.fixture
def auth_registry() -> Iterator[LocalRegistry]:
    require_tools("docker-registry", "skopeo", "htpasswd")
    with LocalRegistry(user="ci-bot", password="s3cret-Pa55") as reg:
        yield reg


def test_credentials_from_the_environment_work_and_never_show(
    auth_registry: LocalRegistry, tmp_path: Path
) -> None:
    repo = f"{auth_registry.host}/ml/hello"
    env = {"TFGOV_REGISTRY_USER": "ci-bot", "TFGOV_REGISTRY_PASSWORD": "s3cret-Pa55"}
    pushed = push_layout(*tiny_image(tmp_path / "a", "one"), repo, ("t1",), {}, env=env)
    assert "s3cret" not in repr(pushed)


def test_a_wrong_password_says_authentication_failed_and_never_echoes_it(
    auth_registry: LocalRegistry, tmp_path: Path
) -> None:
    env = {"TFGOV_REGISTRY_USER": "ci-bot", "TFGOV_REGISTRY_PASSWORD": "wrong-Pa55word"}
    with pytest.raises(RegistryError) as raised:
        push_layout(
            *tiny_image(tmp_path / "a", "one"), f"{auth_registry.host}/ml/hello", ("t1",), {}, env=env
        )
    shown = "\n".join(raised.value.lines())
    assert f"authentication to {auth_registry.host} failed" in shown
    assert "wrong-Pa55word" not in shown
    assert raised.value.exit_code == 3


def test_tls_with_the_registry_ca_works_and_without_it_fails_clearly(tmp_path: Path) -> None:
    require_tools("docker-registry", "skopeo", "openssl")
    with LocalRegistry(tls=True) as reg:
        repo = f"{reg.host}/ml/hello"
        image = tiny_image(tmp_path / "a", "one")
        settings = {reg.host: {"ca_file": str(reg.ca_file)}}
        assert push_layout(*image, repo, ("t1",), settings, env={})["digest"] == image[2]
        other = tmp_path / "other"
        other.mkdir()
        wrong_ca = LocalRegistry._certificate(other)  # a CA that did not sign the registry's certificate
        with pytest.raises(RegistryError, match="TLS to"):
            push_layout(*image, repo, ("t2",), {reg.host: {"ca_file": str(wrong_ca)}}, env={})


def test_a_registry_that_is_down_is_a_clear_exit_3(tmp_path: Path) -> None:
    require_tools("docker-registry", "skopeo")
    reg = LocalRegistry().start()
    host = reg.host
    reg.close()
    with pytest.raises(RegistryError, match=f"registry {host} is unreachable") as raised:
        push_layout(*tiny_image(tmp_path / "a", "one"), f"{host}/ml/hello", ("t1",), {}, env={})
    assert raised.value.exit_code == 3


def test_a_push_cut_off_midway_leaves_no_tag_and_the_next_run_completes_it(tmp_path: Path) -> None:
    require_tools("docker-registry", "skopeo")
    with LocalRegistry() as reg:
        repo = f"{reg.host}/ml/big"
        image = tiny_image(tmp_path / "a", "big", size=128 * 1024 * 1024)
        failure: list[BaseException] = []

        def push() -> None:
            try:
                push_layout(*image, repo, ("t1",), {}, env={})
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=push)
        thread.start()
        uploads = reg.storage / "docker/registry/v2/repositories/ml/big/_uploads"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (uploads.is_dir() and any(uploads.iterdir())):
            time.sleep(0.005)
        reg.stop()  # the registry goes away while the big blob is uploading
        thread.join(timeout=300)
        assert failure, "the push should have failed: the registry was stopped during the upload"
        assert isinstance(failure[0], RegistryError)
        reg.restart()
        access = Access(reg.host, False, None, None)
        assert remote_digest(repo, "t1", access) is None  # no tag names an incomplete image
        done = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{repo}@{image[2]}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode != 0
        assert push_layout(*image, repo, ("t1",), {}, env={})["digest"] == image[2]
        assert remote_digest(repo, "t1", access) == image[2]


def test_the_base_pushed_by_base_build_is_there_by_digest(small_base: BuiltBase) -> None:
    host = small_base.ref.split("/", 1)[0]
    repo = small_base.ref.split("@", 1)[0]
    assert remote_digest(repo, small_base.tag, Access(host, False, None, None)) == small_base.digest


def test_credentials_from_the_containers_auth_file_work(
    auth_registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64
    import json

    auth = tmp_path / "auth.json"
    token = base64.b64encode(b"ci-bot:s3cret-Pa55").decode()
    auth.write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))  # read by skopeo itself
    image = tiny_image(tmp_path / "a", "one")
    assert push_layout(*image, f"{auth_registry.host}/ml/hello", ("t1",), {}, env={})["digest"] == image[2]
