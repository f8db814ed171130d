"""The one way tfgov-ci reaches a registry: TLS, credentials, and every skopeo call.

:class:`Registry` inspects, copies, resolves digests and lists tags, with one timeout, one
"not found" and one explanation of a failure. Reads outside a stage that are many and small
(:meth:`Registry.read`: verify's, the signature bundles; the catalog) go over the registry's HTTP
API itself, with the same credentials and CA and no process; a stage's reads stay skopeo's, which
its plan shows. Every other tool that reads a registry gets the same
credentials and CA from :class:`Access` in the form it wants (:meth:`Access.skopeo_args`,
:meth:`Access.syft_env`, :meth:`Access.docker_config` for cosign and other docker-config readers).
No code outside this module cuts a host out of a string: parse a
:class:`~tfgov_ci.oci.reference.Reference` once and pass it.

Credentials come from the environment (``TFGOV_REGISTRY_USER``/``TFGOV_REGISTRY_PASSWORD``, or
GitLab's ``CI_REGISTRY_USER``/``CI_REGISTRY_PASSWORD`` for ``CI_REGISTRY``) or from the usual
auth files skopeo reads (``REGISTRY_AUTH_FILE``, containers' auth.json, docker's config.json:
skopeo reads them itself; the whole host's entry of the first that names it is read here too,
for the HTTP reads and cosign; a credential helper's are skopeo's alone), never from tfgov.yaml.
The environment's reach skopeo in a private auth file (mode 0600, deleted afterwards), never on a
command line, and every log line is redacted.
TLS: a custom CA through ``registries.<host>.ca_file``; no verification (which also allows plain
HTTP) only for loopback hosts or where ``registries.<host>.insecure: true`` says so, loudly.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import ipaddress
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci import tools
from tfgov_ci.errors import GateFailed, ToolError
from tfgov_ci.oci import reference
from tfgov_ci.oci.layout import CHUNK, HashingWriter, Writable
from tfgov_ci.oci.reference import Reference

if TYPE_CHECKING:
    import urllib.request

RETRY_TIMES = 3
MAX_READ = 4 * 1024 * 1024  # bytes: the distribution spec's manifest limit, and any small document's
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = ",".join(  # what a manifest read accepts: every kind an image or its referrers are
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1 : host.index("]")]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """What skopeo needs to talk to one registry host."""

    host: str
    tls_verify: bool
    ca_file: Path | None
    user: str | None
    password: str | None = None
    warning: str | None = None
    own_files: bool = False  # the credentials are the user's auth file's, which skopeo reads itself

    @property
    def secrets(self) -> tuple[str, ...]:
        if not self.password:
            return ()
        basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return (self.password, basic)

    @contextmanager
    def skopeo_args(self, side: str, *, planned: bool = False) -> Iterator[list[str]]:
        """Options for one side of a skopeo command: side is "src", "dest" or "" (inspect).

        ``planned``: the same options with placeholders for the private files, for a plan; the
        runner matches ``<...>`` against what ran (:func:`tfgov_ci.pipeline.agrees`)."""
        dash = f"--{side}-" if side else "--"
        args = [f"{dash}tls-verify={'true' if self.tls_verify else 'false'}"]
        if planned:
            if self.ca_file is not None:
                args.append(f"{dash}cert-dir=<private cert dir>")
            if self._hands_on():
                args.append(f"{dash}authfile=<private auth file>")
            yield args
            return
        with tempfile.TemporaryDirectory(prefix="tfgov-registry.") as tmp:
            if self.ca_file is not None:
                certs = Path(tmp) / "certs"
                certs.mkdir()
                shutil.copyfile(self.ca_file, certs / "ca.crt")
                args.append(f"{dash}cert-dir={certs}")
            if self._hands_on():
                authfile = Path(tmp) / "auth.json"
                _write_private(authfile, {"auths": {self.host: {"auth": self._basic()}}})
                args.append(f"{dash}authfile={authfile}")
            yield args

    def _hands_on(self) -> bool:
        """Whether skopeo gets a private auth file: for the environment's credentials. Those of the
        user's own auth files it finds there itself, as containers/image looks them up (a
        namespace's own entry, a credential helper), which :func:`access` follows only in part."""
        return bool(self.user and self.password) and not self.own_files

    def _basic(self) -> str:
        return base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    def syft_env(self) -> dict[str, str]:
        """syft's registry settings (its environment: nothing on a command line)."""
        return self.anchore_env("SYFT")

    def anchore_env(self, tool: str) -> dict[str, str]:
        """The registry settings syft and grype read from their environment (``SYFT_``, ``GRYPE_``)."""
        env = {f"{tool}_REGISTRY_AUTH_AUTHORITY": self.host}
        if self.ca_file is not None:
            env[f"{tool}_REGISTRY_CA_CERT"] = str(self.ca_file)
        elif not self.tls_verify:
            env[f"{tool}_REGISTRY_INSECURE_USE_HTTP"] = "true"
        if self.user and self.password:
            env[f"{tool}_REGISTRY_AUTH_USERNAME"] = self.user
            env[f"{tool}_REGISTRY_AUTH_PASSWORD"] = self.password
        return env

    @contextmanager
    def docker_config(self) -> Iterator[dict[str, str]]:
        """The environment for tools that read docker's config.json (cosign, trivy, crane): a
        private ``DOCKER_CONFIG`` folder holding this registry's credentials, deleted afterwards,
        and ``SSL_CERT_FILE`` for a custom CA. Without credentials tfgov-ci can read (none given,
        or a credential helper's) the tool reads the user's own config, helpers included."""
        env = {"SSL_CERT_FILE": str(self.ca_file)} if self.ca_file is not None else {}
        if not (self.user and self.password):
            yield env
            return
        with tempfile.TemporaryDirectory(prefix="tfgov-docker-config.") as tmp:
            _write_private(Path(tmp) / "config.json", {"auths": {self.host: {"auth": self._basic()}}})
            yield {**env, "DOCKER_CONFIG": tmp}


def _write_private(path: Path, doc: Any) -> None:
    """A file only its owner can read (credentials), created new."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(doc, handle)


def access(host: str, settings: Mapping[str, Mapping[str, Any]], env: Mapping[str, str]) -> Access:
    """The access for ``host`` from tfgov.yaml's ``registries`` and the environment."""
    entry = settings.get(host, {})
    ca_file = Path(entry["ca_file"]) if entry.get("ca_file") else None
    insecure = bool(entry.get("insecure", False))
    warning = None
    if insecure and not is_loopback(host):
        warning = f"registry {host}: TLS verification is OFF (registries.{host}.insecure: true)"
    tls_verify = ca_file is not None or not (insecure or is_loopback(host))
    user = password = None
    own_files = False
    if env.get("TFGOV_REGISTRY_USER") and env.get("TFGOV_REGISTRY_PASSWORD"):
        user, password = env["TFGOV_REGISTRY_USER"], env["TFGOV_REGISTRY_PASSWORD"]
    elif env.get("CI_REGISTRY") == host and env.get("CI_REGISTRY_USER") and env.get("CI_REGISTRY_PASSWORD"):
        user, password = env["CI_REGISTRY_USER"], env["CI_REGISTRY_PASSWORD"]
    elif found := _from_auth_files(host, env):
        (user, password), own_files = found, True
    return Access(host, tls_verify, ca_file, user, password, warning, own_files)


def auth_files(env: Mapping[str, str]) -> list[Path]:
    """The auth files skopeo (containers/image) reads, in the order containers-auth.json(5) gives:
    ``REGISTRY_AUTH_FILE`` when it is set; containers' auth.json (in ``XDG_RUNTIME_DIR``, else
    /run/containers/UID; then ``XDG_CONFIG_HOME`` or ~/.config); docker's config.json
    (``DOCKER_CONFIG`` or ~/.docker). (Newer containers/image stops after ``REGISTRY_AUTH_FILE``;
    Debian 12's skopeo 1.9 goes on, as its manual says.)"""
    home = env.get("HOME")
    if env.get("XDG_RUNTIME_DIR"):
        runtime = [Path(env["XDG_RUNTIME_DIR"]) / "containers/auth.json"]
    else:  # where a rootful `podman login` writes (Linux only, as containers/image)
        runtime = [Path(f"/run/containers/{os.getuid()}/auth.json")] if sys.platform == "linux" else []
    config_home = env.get("XDG_CONFIG_HOME") or (f"{home}/.config" if home else None)
    docker = env.get("DOCKER_CONFIG") or (f"{home}/.docker" if home else None)
    return [
        *([Path(env["REGISTRY_AUTH_FILE"])] if env.get("REGISTRY_AUTH_FILE") else []),
        *runtime,
        *([Path(config_home) / "containers/auth.json"] if config_home else []),
        *([Path(docker) / "config.json"] if docker else []),
    ]


def _from_auth_files(host: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The user and password the first auth file naming ``host`` holds for the whole host (a key
    ``host``, or a URL ``https://host/...`` as docker writes), as skopeo picks them; an empty entry
    (docker's with a ``credsStore``, which containers/image does not read) sends the search on. A
    key ``host/namespace`` is that namespace's alone and not taken (newer containers/image match it
    to that namespace; Debian 12's skopeo 1.9 takes it for the whole host). None when no file
    names the host, or the first that does has a credential helper for it (``credHelpers``):
    skopeo asks the helper, tfgov-ci's HTTP reads go without."""
    for path in auth_files(env):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # missing, or not an auth file: skopeo says so itself if it matters
        if not isinstance(doc, dict):
            continue
        helpers, auths = doc.get("credHelpers"), doc.get("auths")
        if isinstance(helpers, dict) and host in helpers:
            return None
        for key, entry in auths.items() if isinstance(auths, dict) else ():
            if _auth_host(str(key)) != host:
                continue
            encoded = entry.get("auth") if isinstance(entry, dict) else None
            if not encoded:
                continue  # an empty entry: the search goes on
            try:
                user, _, password = base64.b64decode(encoded).decode().partition(":")
            except (TypeError, ValueError):
                return None
            return (user, password) if user and password else None
    return None


def _auth_host(key: str) -> str:
    """The host an auth file's key names for the whole host: a URL's host (docker's
    ``https://host/v1/``), or the key itself (so ``host/namespace`` names no whole host)."""
    scheme, found, rest = key.partition("://")
    return rest.split("/", 1)[0] if found and scheme in ("http", "https") else key


AUTH_HINT = "check TFGOV_REGISTRY_USER / TFGOV_REGISTRY_PASSWORD (or your auth file)"
_REFUSED = re.compile(r"\b(unauthorized|denied|forbidden|401|403)\b")


def registry_refused(stderr: str, host: str) -> bool:
    """Whether a tool's output says the registry refused it: a line with a refusal (whole words)
    that names the registry, by its URL (cosign: ``GET https://HOST/v2/...: UNAUTHORIZED``), a
    repository on it (skopeo: ``... to HOST/REPO: denied``), or a token asked for a repository
    (``scope=repository``: Harbor's token service, GitLab's on another host). A KMS's
    ``PermissionDenied`` or a Fulcio's 401 (an expired OIDC token) names none of these."""
    name = host.lower()
    on_it = re.compile(rf"://{re.escape(name)}/|(^|\s){re.escape(name)}/|scope=repository")
    return any(_REFUSED.search(line) and on_it.search(line) for line in stderr.lower().splitlines())


def explain(stderr: str, host: str) -> tuple[str, str]:
    """A skopeo failure against ``host`` as (message, hint): authentication, reachability, TLS."""
    text = stderr.lower()
    if "unauthorized" in text or "authentication required" in text or "denied" in text:
        return (f"authentication to {host} failed", AUTH_HINT)
    if "connection refused" in text or "no such host" in text or "i/o timeout" in text:
        return (f"registry {host} is unreachable", "is it running, and is the host:port right?")
    if "certificate" in text or "x509" in text or "tls" in text:
        return (f"TLS to {host} failed", f"set registries.{host}.ca_file to the registry's CA")
    return (f"skopeo failed against {host}", "see the end of skopeo's output above")


# --- the transport: every skopeo call against a registry ------------------------------------------


class RegistryError(ToolError):
    """A registry could not be read or written (exit 3); the message says why, the hint what to do."""


def not_found(stderr: str) -> bool:
    """skopeo's words for "no such manifest", from distribution, Harbor and friends."""
    text = stderr.lower()
    return "manifest unknown" in text or "not found" in text or "name unknown" in text


def layout_transport(layout: Path | str, ref: str) -> str:
    """skopeo's name for an image in a local OCI layout: ``oci:DIR:TAG``."""
    return f"oci:{layout}:{ref}"


class Registry:
    """One registry host, reached through skopeo with its :class:`Access`.

    The argv of each operation comes from one method (``*_argv``), which a stage's plan calls with
    ``planned=True`` and its run without, so the plan shows the command that runs.
    """

    TIMEOUT_S = 3600

    def __init__(self, reach: Access) -> None:
        self.access = reach

    @classmethod
    def of(
        cls, ref: Reference, registries: Mapping[str, Mapping[str, Any]], env: Mapping[str, str] | None = None
    ) -> Registry:
        return cls(access(ref.registry, registries, os.environ if env is None else env))

    @property
    def host(self) -> str:
        return self.access.host

    @property
    def warnings(self) -> tuple[str, ...]:
        return (self.access.warning,) if self.access.warning else ()

    # -- argv ----------------------------------------------------------------------------------

    def inspect_argv(self, ref: Reference, args: Sequence[str], *, config: bool = False) -> list[str]:
        return ["skopeo", "inspect", "--config" if config else "--raw", *args, f"docker://{ref}"]

    def copy_argv(
        self, source: str, dest: str, args: Sequence[str], *, index_only: bool = False
    ) -> list[str]:
        """``skopeo copy``, digests kept; ``index_only``: an index whose manifests are pushed already,
        one by one (skopeo re-encodes such an index, so its digest cannot be kept)."""
        argv = ["skopeo", "copy", "--quiet"]
        argv += ["--multi-arch", "index-only"] if index_only else ["--preserve-digests"]
        return [*argv, f"--retry-times={RETRY_TIMES}", *args, source, dest]

    def list_tags_argv(self, ref: Reference, args: Sequence[str]) -> list[str]:
        return ["skopeo", "list-tags", *args, f"docker://{ref.registry}/{ref.repository}"]

    # -- operations ----------------------------------------------------------------------------

    def _run(self, argv: list[str]) -> tools.Completed:
        return tools.run(argv, secrets=self.access.secrets, check=False, timeout=self.TIMEOUT_S)

    def fail(self, done: tools.Completed, what: str | None = None) -> RegistryError:
        """The one explanation of a failed call: authentication, reachability, TLS, or skopeo's own."""
        message, hint = explain(done.stderr, self.host)
        if what and not_found(done.stderr):
            message, hint = f"{what} not found in {self.host}", "check the reference and its digest"
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        return RegistryError(message, hint, argv=done.argv, returncode=done.returncode, stderr_tail=tail)

    def manifest(self, ref: Reference) -> bytes | None:
        """The manifest ``ref`` names, byte for byte, or None when there is none."""
        with self.access.skopeo_args("") as args:
            done = self._run(self.inspect_argv(ref, args))
        if done.returncode == 0:
            return done.stdout.encode()
        if not_found(done.stderr):
            return None
        raise self.fail(done)

    def digest_of(self, ref: Reference) -> str | None:
        """The digest of the manifest ``ref`` names now, or None when there is none."""
        raw = self.manifest(ref)
        return None if raw is None else "sha256:" + hashlib.sha256(raw).hexdigest()

    def config(self, ref: Reference) -> dict[str, Any]:
        """The image config ``ref`` names (``skopeo inspect --config``)."""
        with self.access.skopeo_args("") as args:
            done = self._run(self.inspect_argv(ref, args, config=True))
        if done.returncode != 0:
            raise self.fail(done, f"image {ref}")
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    @contextmanager
    def copy_args(self, source: str, *, planned: bool = False) -> Iterator[list[str]]:
        """skopeo copy's options for a copy into this registry: the destination's, and the
        source's too when the source is this registry (``docker://``: a tag set on a pushed digest)."""
        with contextlib.ExitStack() as stack:
            args = []
            if source.startswith("docker://"):
                args += stack.enter_context(self.access.skopeo_args("src", planned=planned))
            args += stack.enter_context(self.access.skopeo_args("dest", planned=planned))
            yield args

    def push(self, source: str, dest: Reference, *, index_only: bool = False) -> None:
        """Copy ``source`` (a skopeo transport name, e.g. :func:`layout_transport`, or this
        registry's ``docker://`` reference) to ``dest``."""
        with self.copy_args(source) as args:
            done = self._run(self.copy_argv(source, f"docker://{dest}", args, index_only=index_only))
        if done.returncode != 0:
            raise self.fail(done)

    def pull(self, source: Reference, dest: str) -> None:
        """Copy ``source`` into ``dest`` (a skopeo transport name), digests kept."""
        with self.access.skopeo_args("src") as args:
            done = self._run(self.copy_argv(f"docker://{source}", dest, args))
        if done.returncode != 0:
            raise self.fail(done, f"image {source}")

    def tags(self, ref: Reference) -> list[str]:
        """Every tag of ``ref``'s repository (the registry's tag list API); [] for no repository."""
        with self.access.skopeo_args("") as args:
            done = self._run(self.list_tags_argv(ref, args))
        if done.returncode != 0:
            if not_found(done.stderr):
                return []
            raise self.fail(done)
        found: list[str] = json.loads(done.stdout).get("Tags") or []
        return found

    def read(self, ref: Reference, *, blob: bool = False, limit: int = MAX_READ) -> bytes:
        """The manifest ``ref`` names by digest or tag (``latest`` when it names neither), or, with
        ``blob``, the blob its digest names, byte for byte and at most ``limit`` bytes, over the
        registry's HTTP API: no process, for many small reads (signature bundles, verify's reads);
        by digest, checked against it. Not a stage's read (a plan shows skopeo's).
        :class:`HttpRefused` for a status that is not success (404: there is none)."""
        if ref.digest and not ref.digest.startswith("sha256:"):
            raise RegistryError(
                f"{ref}: only sha256 digests are read here", "cosign and skopeo read the rest"
            )
        if blob and not ref.digest:
            raise RegistryError(f"{ref}: a blob is read by its digest", "name it REPO@sha256:...")
        name = ref.digest or ref.tag or "latest"
        kind = "blobs" if blob else "manifests"
        body, _ = _http_get(
            self.access, f"/v2/{ref.repository}/{kind}/{name}", scope=f"repository:{ref.repository}:pull",
            accept=None if blob else MANIFEST_TYPES, limit=limit,
        )  # fmt: skip
        if ref.digest and "sha256:" + hashlib.sha256(body).hexdigest() != ref.digest:
            raise RegistryError(
                f"{self.host} answered {ref} with content of another digest", "a proxy or cache rewrote it?"
            )
        return body

    def fetch_blob(self, ref: Reference, into: Path) -> None:
        """The blob ``ref``'s digest names, of any size, streamed into ``into`` (whole or not at all:
        written beside it, checked against the digest, then renamed)."""
        if not (ref.digest or "").startswith("sha256:"):
            raise RegistryError(f"{ref}: a blob is fetched by its sha256 digest", "name it REPO@sha256:...")
        into.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{into.name}.", suffix=".part", dir=into.parent)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as sink:
                hashing = HashingWriter(sink)
                _http_get(
                    self.access, f"/v2/{ref.repository}/blobs/{ref.digest}",
                    scope=f"repository:{ref.repository}:pull", sink=hashing,
                )  # fmt: skip
            if hashing.digest != ref.digest:
                raise RegistryError(
                    f"{self.host} answered {ref} with content of another digest",
                    "a proxy or cache rewrote it?",
                )
            tmp.replace(into)
        finally:
            tmp.unlink(missing_ok=True)

    def referrers(self, ref: Reference) -> bytes | None:
        """The OCI 1.1 referrers API's index for ``ref``'s digest, or None where the registry has no
        such API: a 404, or an answer that is not an image index (a proxy's page for any path;
        cosign asks for an index's media type). The referrers tag fallback is what cosign reads
        then, and what to read."""
        try:
            body, _ = _http_get(
                self.access, f"/v2/{ref.repository}/referrers/{ref.digest}",
                scope=f"repository:{ref.repository}:pull", accept=INDEX_TYPE,
            )  # fmt: skip
        except HttpRefused as exc:
            if exc.code == 404:
                return None
            raise
        try:
            index = json.loads(body)
        except ValueError:
            return None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            return None
        return body if index.get("mediaType", INDEX_TYPE) == INDEX_TYPE else None

    def catalog(self) -> list[str]:
        """Every repository the registry lists: the distribution spec's catalog API
        (``/v2/_catalog``, page by page), which skopeo does not call; the same credentials and CA."""
        names: list[str] = []
        path: str | None = "/v2/_catalog?n=1000"
        while path:
            try:
                body, link = _http_get(self.access, path, scope="registry:catalog:*")
            except HttpRefused as exc:
                if exc.code in (401, 403):
                    raise RegistryError(
                        f"{self.host} refused to list its repositories ({exc.code})",
                        "the account (TFGOV_REGISTRY_USER/PASSWORD, or an auth file's; a credential "
                        "helper's are not read here) needs the right to list the catalog (Harbor: a "
                        "system robot account or admin); or name the repositories with --repository "
                        "NAME, without wildcards",
                    ) from None
                if exc.code == 404:
                    raise RegistryError(
                        f"{self.host} has no catalog API (/v2/_catalog)",
                        "name the repositories with --repository NAME, without wildcards",
                    ) from None
                raise
            try:
                names += json.loads(body).get("repositories") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{self.host} answered its catalog with no repository list") from None
            path = _next_page(link)
        return names


_WWW_AUTHENTICATE = re.compile(r'(\w+)="([^"]*)"')


class HttpRefused(RegistryError):
    """The registry's HTTP API answered a status that is not success (``code``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# (access: the host and credentials, scope) -> the bearer header a token server granted them, for
# this process: another account's token is never reused
_TOKENS: dict[tuple[Access, str], str] = {}


_SCHEMES: dict[Access, str] = {}  # the scheme each registry last answered a read on, this process


@functools.cache
def _opener(ca_file: Path | None, tls_verify: bool) -> urllib.request.OpenerDirector:
    """One opener per CA and verification (a TLS context reads the CA bundle: ~30 ms a time), whose
    redirects never downgrade HTTPS to HTTP. Credentials are unredirected headers: a registry that
    sends a blob's download to its storage (S3, a CDN) does not send them there."""
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

    class NoDowngrade(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
            if req.full_url.startswith("https:") and not newurl.startswith("https:"):
                return None  # not followed: the 3xx is the answer
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoDowngrade())


def _open(
    reach: Access, url: str, auth: str | None, accept: str | None, limit: int, sink: Writable | None = None
) -> tuple[bytes, str | None]:
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    if auth:
        request.add_unredirected_header("Authorization", auth)
    with _opener(reach.ca_file, reach.tls_verify).open(request, timeout=60) as response:
        if sink is not None:  # a blob of any size, streamed
            shutil.copyfileobj(response, sink, CHUNK)
            return b"", response.headers.get("Link")
        body = response.read(limit + 1)
        if len(body) > limit:
            raise RegistryError(
                f"{reach.host} answered {url} with more than {limit} bytes", "is this the document it names?"
            )
        return body, response.headers.get("Link")


def _http_get(
    reach: Access,
    path: str,
    *,
    scope: str,
    accept: str | None = None,
    limit: int = MAX_READ,
    sink: Writable | None = None,
) -> tuple[bytes, str | None]:
    """GET ``path`` from the registry: HTTPS (verified, with ``ca_file`` when set; unverified, or
    plain HTTP, only where :class:`Access` allows it), basic credentials, and the bearer token
    dance Harbor and Docker's token servers ask for (a token kept for the process, per account and
    scope); at most ``limit`` bytes. Returns the body and the ``Link`` header; a status that is not
    success is :class:`HttpRefused`."""
    import urllib.error
    import urllib.parse

    basic = f"Basic {reach._basic()}" if reach.user and reach.password else None
    last: Exception | None = None
    schemes = ("https",) if reach.tls_verify else ("https", "http")
    for scheme in sorted(schemes, key=lambda s: s != _SCHEMES.get(reach)):  # the one that answered last
        url = f"{scheme}://{reach.host}{path}"
        try:
            try:
                answer = _open(reach, url, _TOKENS.get((reach, scope), basic), accept, limit, sink)
                _SCHEMES[reach] = scheme
                return answer
            except urllib.error.HTTPError as exc:
                challenge = exc.headers.get("WWW-Authenticate", "")
                if exc.code != 401 or not challenge.lower().startswith("bearer"):
                    raise
            fields = dict(_WWW_AUTHENTICATE.findall(challenge))
            realm_url = urllib.parse.urlsplit(fields.get("realm", ""))
            if realm_url.scheme not in ("https", "http") or not realm_url.netloc:
                raise RegistryError(f"{reach.host} asks for a token without saying where ({challenge!r})")
            # The password goes only to a token server over HTTPS, or to the registry itself.
            trusted = realm_url.scheme == "https" or realm_url.netloc == reach.host
            query = urllib.parse.urlencode({"service": fields.get("service", ""), "scope": scope})
            grant = json.loads(
                _open(reach, f"{fields['realm']}?{query}", basic if trusted else None, None, MAX_READ)[0]
            )
            bearer = f"Bearer {grant.get('token') or grant.get('access_token')}"
            _TOKENS[(reach, scope)] = bearer
            answer = _open(reach, url, bearer, accept, limit, sink)
            _SCHEMES[reach] = scheme
            return answer
        except urllib.error.HTTPError as exc:
            raise HttpRefused(exc.code, f"{reach.host} answered {exc.code} to {path}") from None
        except (urllib.error.URLError, OSError) as exc:
            last = exc  # plain HTTP next, where allowed
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(f"{reach.host}'s token server answered with no token") from None
    raise RegistryError(
        f"registry {reach.host} is unreachable ({last})", "is it running, and is the host:port right?"
    )


def _next_page(link: str | None) -> str | None:
    """The next page of a paginated list: ``Link: </v2/_catalog?last=x&n=1000>; rel="next"``."""
    found = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', link or "")
    return found.group(1) if found else None


def resolve(ref: Reference, registry: Registry) -> Reference:
    """``ref`` pinned: its own digest, or the digest its tag names now (RegistryError if none)."""
    if ref.digest:
        return ref
    digest = registry.digest_of(ref)
    if digest is None:
        raise RegistryError(f"no image {ref}", "check the reference (tfgov-ci prints it after publish)")
    return Reference(ref.registry, ref.repository, ref.tag, digest)


# --- publishing a layout: by digest first, then each tag ----------------------------------------


class TagConflict(GateFailed):
    """A commit tag already points at another digest: tags are immutable (exit 1)."""


@dataclass(frozen=True)
class Call:
    """One registry call a push makes, as a plan shows it (``<...>``: known when it runs)."""

    description: str
    argv: tuple[str, ...]  # empty: a read tfgov-ci makes itself, over HTTP
    optional: bool = False

    @property
    def tool(self) -> str | None:
        return "skopeo" if self.argv else None


def push_calls(
    registry: Registry,
    layout: Path | str,
    layout_ref: str,
    target: Reference,
    digest: str,
    tags: Sequence[str],
    *,
    source: str | None = None,
) -> list[Call]:
    """The calls :func:`push_layout` makes, in order; ``digest`` may be a placeholder."""
    pushed = source is not None  # the build pushed it: tags only, registry to registry
    if source is None:
        source = layout_transport(layout, layout_ref)
    with (
        registry.access.skopeo_args("", planned=True) as inspect,
        registry.copy_args(source, planned=True) as dest,
    ):
        at = _at(target, digest=digest)
        calls = [
            Call(
                f"read what tag {tag} names now (commit tags are immutable)",
                tuple(registry.inspect_argv(_at(target, tag=tag), inspect)),
            )
            for tag in tags
        ]
        if not pushed:
            calls.append(Call("push by digest", tuple(registry.copy_argv(source, f"docker://{at}", dest))))
        calls += [
            Call(
                f"tag {tag} (skipped when it names this digest already)",
                tuple(registry.copy_argv(source, f"docker://{_at(target, tag=tag)}", dest)),
                optional=True,
            )
            for tag in tags
        ]
        if tags:
            calls.append(
                Call(
                    f"check that {tags[0]} names the pushed digest",
                    tuple(registry.inspect_argv(_at(target, tag=tags[0]), inspect)),
                )
            )
    return calls


def _at(target: Reference, *, tag: str | None = None, digest: str | None = None) -> Reference:
    return Reference(target.registry, target.repository, tag, digest)


def push_layout(
    layout: Path,
    layout_ref: str,
    digest: str,
    target: Reference | str,
    tags: Sequence[str],
    registries: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str] | None = None,
    *,
    moving: Sequence[str] = (),
    force_retag: bool = False,
    source: str | None = None,
    before_tags: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Push ``layout:layout_ref`` (whose manifest is ``digest``) to ``target`` and tag it; or, with
    ``source`` (``docker://target@digest``, pushed by the build), only tag it.

    The manifest goes by digest first (a registry accepts it only once all its blobs are there, so
    no tag ever names an incomplete image), then each tag. Every tag but those in ``moving`` (the
    branch tag) is immutable once it names a digest: :class:`TagConflict` unless ``force_retag``,
    raised before anything is written. ``before_tags`` runs once the image is there by digest and
    before any tag is set (publish attaches the SBOMs there).
    """
    repo = reference.parse(target) if isinstance(target, str) else target
    registry = Registry.of(repo, registries, env)
    name = f"{repo.registry}/{repo.repository}"
    existing = {tag: registry.digest_of(_at(repo, tag=tag)) for tag in tags}
    conflicts = {tag: d for tag, d in existing.items() if d is not None and d != digest and tag not in moving}
    if conflicts and not force_retag:
        shown = "; ".join(f"{name}:{tag} is {d}, this build is {digest}" for tag, d in conflicts.items())
        raise TagConflict(
            f"tag already points at another image: {shown}",
            "commit tags are immutable; rebuild from a new commit, or pass --force-retag",
        )
    started = time.monotonic()
    if source is None:
        source = layout_transport(layout, layout_ref)
        registry.push(source, _at(repo, digest=digest))
    if before_tags is not None:
        before_tags()
    for tag in tags:
        if existing[tag] != digest:
            registry.push(source, _at(repo, tag=tag))
    pushed = registry.digest_of(_at(repo, tag=tags[0])) if tags else digest
    if pushed != digest:
        raise RegistryError(
            f"{name}:{tags[0]} names {pushed} after the push, not {digest}",
            "another writer raced this push; check the registry",
        )
    return {
        "repository": name,
        "digest": digest,
        "reference": f"{name}@{digest}",
        "tags": list(tags),
        "retagged": sorted(conflicts),
        "already_there": sorted(t for t, d in existing.items() if d == digest),
        "seconds": round(time.monotonic() - started, 3),
        "warnings": list(registry.warnings),
    }


def remote_digest(repository: str, tag: str, reach: Access) -> str | None:
    """The digest ``repository:tag`` names now, or None when there is no such tag."""
    return Registry(reach).digest_of(reference.parse(f"{repository}:{tag}"))
