"""How a registry is reached: TLS by default, plain HTTP only on loopback or when said loudly."""

from __future__ import annotations

import base64
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import _TOKENS, Access, Registry, RegistryError, access, auth_files, is_loopback


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:5000") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example.com") and not is_loopback("10.0.0.1:5000")


def test_remote_registries_verify_tls_and_insecure_is_loud() -> None:
    assert access("harbor.corp.example", {}, {}).tls_verify is True
    unsafe = access("harbor.corp.example", {"harbor.corp.example": {"insecure": True}}, {})
    assert unsafe.tls_verify is False
    assert unsafe.warning and "TLS verification is OFF" in unsafe.warning
    assert access("127.0.0.1:5000", {}, {}).tls_verify is False
    assert access("127.0.0.1:5000", {}, {}).warning is None


def test_a_custom_ca_turns_verification_on_even_for_loopback(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    reg = access("127.0.0.1:5000", {"127.0.0.1:5000": {"ca_file": str(ca)}}, {})
    assert reg.tls_verify is True
    with reg.skopeo_args("dest") as args:
        assert args[0] == "--dest-tls-verify=true"
        cert_dir = Path(args[1].split("=", 1)[1])
        assert (cert_dir / "ca.crt").read_text() == ca.read_text()


def test_credentials_come_from_the_environment_into_a_private_auth_file() -> None:
    env = {"TFGOV_REGISTRY_USER": "bot", "TFGOV_REGISTRY_PASSWORD": "pw-1"}
    reg = access("harbor.corp.example", {}, env)
    assert "pw-1" in reg.secrets
    with reg.skopeo_args("") as args:
        assert not any("pw-1" in arg for arg in args)
        authfile = Path(next(a for a in args if a.startswith("--authfile=")).split("=", 1)[1])
        assert authfile.stat().st_mode & 0o777 == 0o600
        assert "harbor.corp.example" in json.loads(authfile.read_text())["auths"]
    assert not authfile.exists()  # gone after use


def test_gitlab_registry_credentials_apply_to_the_gitlab_registry_only() -> None:
    env = {
        "CI_REGISTRY": "registry.gitlab.example",
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_REGISTRY_PASSWORD": "job-token",
    }
    assert access("registry.gitlab.example", {}, env).user == "gitlab-ci-token"
    assert access("harbor.corp.example", {}, env).user is None


def test_the_same_credentials_and_ca_reach_syft_and_docker_config_readers_off_the_command_line(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"TFGOV_REGISTRY_USER": "bot", "TFGOV_REGISTRY_PASSWORD": "pw-1"}
    reg = access("harbor.corp.example", {"harbor.corp.example": {"ca_file": str(ca)}}, env)
    assert reg.syft_env() == {
        "SYFT_REGISTRY_AUTH_AUTHORITY": "harbor.corp.example",
        "SYFT_REGISTRY_CA_CERT": str(ca),
        "SYFT_REGISTRY_AUTH_USERNAME": "bot",
        "SYFT_REGISTRY_AUTH_PASSWORD": "pw-1",
    }
    with reg.docker_config() as docker_env:
        config = Path(docker_env["DOCKER_CONFIG"]) / "config.json"
        assert config.stat().st_mode & 0o777 == 0o600
        auth = json.loads(config.read_text())["auths"]["harbor.corp.example"]["auth"]
        assert base64.b64decode(auth) == b"bot:pw-1"
        assert docker_env["SSL_CERT_FILE"] == str(ca)
    assert not config.exists()  # gone after use
    plain = access("127.0.0.1:5000", {}, {})
    assert plain.syft_env()["SYFT_REGISTRY_INSECURE_USE_HTTP"] == "true"


def test_without_credentials_it_can_read_cosign_reads_the_user_s_docker_config(tmp_path: Path) -> None:
    """A credential helper (ecr-login, a desktop's store) is the user's config's to name: a private
    DOCKER_CONFIG without it would leave cosign and trivy with no credentials at all."""
    host = "harbor.corp.example"
    helper = tmp_path / "config.json"
    helper.write_text(json.dumps({"auths": {}, "credHelpers": {host: "ecr-login"}}))
    env = {"REGISTRY_AUTH_FILE": str(helper), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    with access(host, {}, env).docker_config() as cosign_env:
        assert "DOCKER_CONFIG" not in cosign_env and "SSL_CERT_FILE" not in cosign_env


def test_a_plan_shows_the_same_options_with_placeholders_and_writes_no_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"TFGOV_REGISTRY_USER": "bot", "TFGOV_REGISTRY_PASSWORD": "pw-1"}
    reg = access("harbor.corp.example", {"harbor.corp.example": {"ca_file": str(ca)}}, env)
    with reg.skopeo_args("dest", planned=True) as planned, reg.skopeo_args("dest") as real:
        assert planned == [
            "--dest-tls-verify=true",
            "--dest-cert-dir=<private cert dir>",
            "--dest-authfile=<private auth file>",
        ]
        assert [arg.split("=", 1)[0] for arg in real] == [arg.split("=", 1)[0] for arg in planned]


class _TokenRegistry(http.server.BaseHTTPRequestHandler):
    """A registry's catalog behind a bearer-token server, as Harbor and Docker's distribution with
    token auth answer (neither can run here): 401 with a challenge, a token for the right basic
    credentials, the catalog in pages linked by ``Link``."""

    realm = ""
    seen_authorization: list[str] = []  # noqa: RUF012 (one test at a time)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        if self.path.startswith("/token"):
            self.seen_authorization.append(auth)
            good = auth == "Basic " + base64.b64encode(b"robot:s3cret").decode()
            self._send(200 if good else 401, {"token": "t0k"} if good else {"errors": []})
        elif auth != "Bearer t0k":
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{self.realm}",service="reg"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif "last=b" not in self.path:
            self._send(200, {"repositories": ["a", "b"]}, link='</v2/_catalog?last=b&n=1000>; rel="next"')
        else:
            self._send(200, {"repositories": ["ml/c"]})

    def _send(self, status: int, body: object, link: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        if link:
            self.send_header("Link", link)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_the_catalog_follows_the_bearer_token_dance_and_its_pages_and_keeps_the_password_home() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    host = f"127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _TokenRegistry.realm = f"http://{host}/token"  # the registry's own host: it gets the password
        registry = Registry(Access(host, False, None, "robot", "s3cret"))
        assert registry.catalog() == ["a", "b", "ml/c"]
        with pytest.raises(RegistryError, match="refused to list its repositories"):
            Registry(Access(host, False, None, "robot", "wrong")).catalog()
        # The token is kept for the process: the next read asks no token server.
        _TokenRegistry.seen_authorization.clear()
        assert registry.catalog() == ["a", "b", "ml/c"] and _TokenRegistry.seen_authorization == []
        # A token server elsewhere over plain HTTP (a new process: no token kept): asked without
        # the password.
        _TOKENS.clear()
        _TokenRegistry.realm = f"http://localhost:{server.server_address[1]}/token"
        with pytest.raises(RegistryError):
            registry.catalog()
        assert _TokenRegistry.seen_authorization == [""]
    finally:
        server.shutdown()


def test_a_redirect_to_another_host_takes_no_credentials_with_it() -> None:
    """A registry that sends a download to its storage (S3, a CDN), as Harbor and the clouds' do,
    answers 307: the storage host gets the request, never the registry's password or token."""

    seen: list[str] = []
    body = b'{"schemaVersion": 2}'

    class Storage(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    storage = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    where = f"http://localhost:{storage.server_address[1]}/bucket/blob"  # another host name

    class Registry307(Storage):
        def do_GET(self) -> None:
            seen.append("registry: " + self.headers.get("Authorization", ""))
            self.send_response(307)
            self.send_header("Location", where)
            self.send_header("Content-Length", "0")
            self.end_headers()

    registry = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry307)
    for server in (storage, registry):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{registry.server_address[1]}"
        got = Registry(Access(host, False, None, "robot", "s3cret")).read(Reference(host, "ml/x", "v1"))
    finally:
        storage.shutdown()
        registry.shutdown()
    assert got == body
    assert seen == ["registry: Basic " + base64.b64encode(b"robot:s3cret").decode(), ""]  # not to storage


def _auth(path: Path, auths: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths}))
    return path


def _basic(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_credentials_from_the_auth_files_skopeo_reads_in_its_order(tmp_path: Path) -> None:
    """The HTTP reads (verify's, the referrers API's, the image's subject) and cosign get what
    skopeo would use: the whole host's entry in the first auth file naming the host, in the order
    of containers-auth.json(5); skopeo itself is handed none of them (it reads the files)."""
    host = "harbor.corp.example"
    runtime = _auth(tmp_path / "run/containers/auth.json", {"other.example": _basic("x", "y")})
    _auth(tmp_path / "home/.docker/config.json", {f"https://{host}/v1/": _basic("docker-bot", "pw-d")})
    env = {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    reg = access(host, {}, env)
    assert (reg.user, reg.password) == ("docker-bot", "pw-d") and "pw-d" in reg.secrets
    with reg.skopeo_args("dest") as args, reg.skopeo_args("dest", planned=True) as planned:
        assert not any("authfile" in arg for arg in (*args, *planned))  # skopeo reads its own files
    with reg.docker_config() as cosign_env:
        written = json.loads((Path(cosign_env["DOCKER_CONFIG"]) / "config.json").read_text())
    assert written["auths"][host] == _basic("docker-bot", "pw-d")
    _auth(runtime, {host: _basic("podman-bot", "pw-p")})  # earlier in the order: it wins
    assert access(host, {}, env).user == "podman-bot"
    given = _auth(tmp_path / "given.json", {host: _basic("given-bot", "pw-g")})
    assert access(host, {}, {**env, "REGISTRY_AUTH_FILE": str(given)}).user == "given-bot"  # first
    other = _auth(tmp_path / "other.json", {"other.example": _basic("x", "y")})
    assert access(host, {}, {**env, "REGISTRY_AUTH_FILE": str(other)}).user == "podman-bot"  # goes on
    assert access(f"{host}.evil.example", {}, env).user is None  # whole hosts only
    # the environment's account comes first, and skopeo gets it in a private auth file
    mine = access(host, {}, {**env, "TFGOV_REGISTRY_USER": "u", "TFGOV_REGISTRY_PASSWORD": "p"})
    with mine.skopeo_args("dest", planned=True) as planned:
        assert mine.user == "u" and "--dest-authfile=<private auth file>" in planned


def test_a_namespace_s_entry_is_not_the_host_s(tmp_path: Path) -> None:
    """``host/team-a`` is that namespace's robot account: taken for the host, it would be sent for
    team-b's repositories too (containers/image matches it to team-a's alone)."""
    host = "harbor.corp.example"
    alone = {"XDG_RUNTIME_DIR": str(tmp_path / "run")}  # no other file of this machine is read
    only_team = _auth(tmp_path / "team.json", {f"{host}/team-a": _basic("robot-a", "pw-a")})
    assert access(host, {}, {**alone, "REGISTRY_AUTH_FILE": str(only_team)}).user is None
    both = _auth(
        tmp_path / "both.json", {f"{host}/team-a": _basic("robot-a", "pw-a"), host: _basic("h", "pw")}
    )
    assert access(host, {}, {**alone, "REGISTRY_AUTH_FILE": str(both)}).user == "h"


def test_a_credential_helper_or_a_broken_auth_file_gives_no_credentials(tmp_path: Path) -> None:
    host = "harbor.corp.example"
    alone = {"XDG_RUNTIME_DIR": str(tmp_path / "run")}
    helper = tmp_path / "helper.json"  # a helper for the host: its entry's stale auth is not used
    helper.write_text(
        json.dumps({"auths": {host: _basic("stale", "old")}, "credHelpers": {host: "ecr-login"}})
    )
    assert access(host, {}, {**alone, "REGISTRY_AUTH_FILE": str(helper)}).user is None
    # an empty entry (docker login with a credsStore, which containers/image does not read): the
    # search goes on to the next file, as skopeo's does
    store = tmp_path / "store.json"
    store.write_text(json.dumps({"auths": {host: {}}, "credsStore": "secretservice"}))
    later = _auth(tmp_path / "home/.docker/config.json", {host: _basic("later", "pw-l")})
    env = {**alone, "HOME": str(tmp_path / "home")}
    assert later.is_file() and access(host, {}, {**env, "REGISTRY_AUTH_FILE": str(store)}).user == "later"
    assert access(host, {}, {**alone, "REGISTRY_AUTH_FILE": str(store)}).user is None
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert access(host, {}, {**alone, "REGISTRY_AUTH_FILE": str(broken)}).user is None
    assert access(host, {}, {**alone, "REGISTRY_AUTH_FILE": str(tmp_path / "missing.json")}).user is None


def test_without_xdg_runtime_dir_the_rootful_podman_login_file_is_read() -> None:
    """`podman login` as root with no XDG_RUNTIME_DIR (a CI job) writes /run/containers/0/auth.json."""
    files = auth_files({"HOME": "/home/ci"})
    assert files[0] == Path(f"/run/containers/{os.getuid()}/auth.json")
    assert files[1:] == [Path("/home/ci/.config/containers/auth.json"), Path("/home/ci/.docker/config.json")]
    given = auth_files({"REGISTRY_AUTH_FILE": "/etc/auth.json", "XDG_RUNTIME_DIR": "/run/user/1000"})
    assert given[:2] == [Path("/etc/auth.json"), Path("/run/user/1000/containers/auth.json")]


@pytest.mark.parametrize(
    ("status", "body", "api"),
    [
        (
            200,
            b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}',
            True,
        ),
        (200, b"<html>Harbor portal</html>", False),  # a proxy's page for any path
        (200, b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}', False),
        (404, b'{"errors": [{"code": "NOT_FOUND"}]}', False),
    ],
)
def test_only_an_image_index_is_the_referrers_api_s_answer(status: int, body: bytes, api: bool) -> None:
    """A registry without the API, or a proxy that answers any path with a page, gets the referrers
    tag fallback (as cosign does); only an index counts as the API's answer."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None: ...

        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        found = Registry(Access(host, False, None, None)).referrers(
            Reference(host, "ml/x", None, "sha256:" + "a" * 64)
        )
    finally:
        server.shutdown()
    assert found == (body if api else None)
