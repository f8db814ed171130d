"""A proxy in front of the real local registry that refuses some writes as Harbor would.

Harbor itself cannot run here. What it does that matters to the sign stage is small and
documented: a robot account without push rights gets ``403 DENIED``, and a tag immutability rule
answers ``412 PRECONDITION`` to a push onto an existing tag it covers (goharbor/harbor 9427,
9837). Everything else goes through to the real registry unchanged, so skopeo and cosign talk to
a real registry except for the refusals this proxy is told to make.

With ``referrers_api=True`` it also answers the OCI 1.1 referrers API, which the real local
registry (distribution 2.8) lacks: a MOCK of what Harbor 2.8+ does (distribution-spec 1.1,
"Listing Referrers"). It lists each manifest pushed through it with a ``subject``, as its
descriptor (media type, digest, size, artifactType, annotations), answers the push with the
``OCI-Subject`` header, and filters by ``?artifactType=``. The manifests themselves are stored by
the real registry.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tfgov_ci.testing.registry import free_port

# PUT /v2/<repository>/manifests/sha256-<hex>: the referrers tag fallback cosign keeps its bundles in
REFERRERS_TAG = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<tag>sha256-[0-9a-f]{64})$")
MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
REFERRERS_API = re.compile(r"^/v2/(?P<repo>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})$")
INDEX = "application/vnd.oci.image.index.v1+json"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class RefusingProxy:
    """``with RefusingProxy(upstream) as proxy: proxy.host``; set ``proxy.rule`` to ``"forbid"`` (403
    on every write to a ``sha256-*`` tag) or ``"immutable"`` (412 on a write to such a tag that
    exists already), or None to let everything through. ``proxy.refused`` counts refusals;
    ``proxy.tag_writes`` lists the ``sha256-*`` tags written through it."""

    def __init__(self, upstream: str, *, referrers_api: bool = False) -> None:
        self.upstream = upstream
        self.rule: str | None = None
        self.refused = 0
        self.tag_writes: list[str] = []
        self.referrers_api = referrers_api
        # (repository, subject digest) -> the descriptors of the manifests that name it
        self._referrers: dict[tuple[str, str], dict[str, dict[str, object]]] = {}
        self._lock = threading.Lock()
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> RefusingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def refusal(self, method: str, path: str) -> tuple[int, dict[str, object]] | None:
        found = REFERRERS_TAG.match(path.split("?", 1)[0])
        if method != "PUT" or found is None or self.rule is None:
            return None
        name = f"{found['repo']}:{found['tag']}"
        if self.rule == "forbid":
            return 403, {"code": "DENIED", "message": "requested access to the resource is denied"}
        if self.rule == "immutable" and self._exists(path):
            return 412, {
                "code": "PRECONDITION",
                "message": f"Failed to process request due to '{name}' configured as immutable.",
            }
        return None

    def listed(self, path: str) -> tuple[int, dict[str, str], bytes] | None:
        """The referrers API's answer to GET ``path``, when it asks it (and the API is on)."""
        found = REFERRERS_API.match(path.split("?", 1)[0])
        if not self.referrers_api or found is None:
            return None
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        wanted = query.get("artifactType", [None])[0]
        with self._lock:
            entries = list(self._referrers.get((found["repo"], found["digest"]), {}).values())
        headers = {"Content-Type": INDEX}
        if wanted is not None:
            entries = [e for e in entries if e.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}
        return 200, headers, json.dumps(body).encode()

    def pushed(self, path: str, body: bytes) -> dict[str, str]:
        """Note a manifest pushed through (the real registry took it): its subject's referrer.
        Returns the headers to add to the registry's answer."""
        found = MANIFEST.match(path.split("?", 1)[0])
        if found is None:
            return {}
        if REFERRERS_TAG.match(path.split("?", 1)[0]):
            self.tag_writes.append(found["ref"])
        if not self.referrers_api:
            return {}
        try:
            manifest = json.loads(body)
            subject = manifest["subject"]["digest"]
        except (ValueError, KeyError, TypeError):
            return {}
        descriptor: dict[str, object] = {
            "mediaType": manifest.get("mediaType"),
            "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
            "size": len(body),
            "artifactType": manifest.get("artifactType") or manifest["config"]["mediaType"],
        }
        if manifest.get("annotations"):
            descriptor["annotations"] = manifest["annotations"]
        with self._lock:
            self._referrers.setdefault((found["repo"], subject), {})[str(descriptor["digest"])] = descriptor
        return {"OCI-Subject": subject}

    def _exists(self, path: str) -> bool:
        connection = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            connection.request("HEAD", path, headers={"Accept": "application/vnd.oci.image.index.v1+json"})
            return connection.getresponse().status == 200
        finally:
            connection.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    return b"".join(_chunks(self))
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                refused = proxy.refusal(self.command, self.path)
                if refused is not None:
                    proxy.refused += 1
                    status, error = refused
                    self._reply(status, {"Content-Type": "application/json"}, json.dumps({"errors": [error]}))
                    return
                listed = proxy.listed(self.path) if self.command in ("GET", "HEAD") else None
                if listed is not None:
                    self._reply(*listed)
                    return
                headers: dict[str, str] = {}
                for key, value in self.headers.items():  # skopeo sends Accept several times: all kept
                    if key.lower() not in HOP_BY_HOP:
                        headers[key] = f"{headers[key]}, {value}" if key in headers else value
                headers["Content-Length"] = str(len(body))
                connection = http.client.HTTPConnection(proxy.upstream, timeout=300)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
                    if self.command == "PUT" and response.status == 201:
                        kept.update(proxy.pushed(self.path, body))
                    self._reply(response.status, kept, data)
                finally:
                    connection.close()

            def _reply(self, status: int, headers: dict[str, str], data: str | bytes) -> None:
                payload = data.encode() if isinstance(data, str) else data
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() != "content-length":
                        self.send_header(key, value.replace(proxy.upstream, proxy.host))
                # HEAD: the size of what GET would send (clients read a manifest's size from it).
                length = headers.get("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        return Handler


def _chunks(handler: BaseHTTPRequestHandler) -> Iterator[bytes]:
    while True:
        size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            handler.rfile.readline()
            return
        yield handler.rfile.read(size)
        handler.rfile.readline()
