"""OCI image layouts on disk (image-spec v1.1 "image-layout"): blobs, index.json, references.

Blobs are content-addressed and written whole or not at all (temporary file, then rename to
their digest), so a killed build never leaves a blob a later run would trust; every blob read
back is checked against its digest, so a corrupted layout is detected, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tfgov_ci._files import atomic_write_text
from tfgov_ci.errors import TfgovError

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20


class LayoutError(TfgovError):
    """An OCI layout that is missing, malformed or corrupted."""


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Descriptor:
        return cls(data["mediaType"], data["digest"], int(data["size"]), dict(data.get("annotations", {})))


def canonical_json(data: Any) -> bytes:
    """The bytes tfgov-ci writes for a manifest or config: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class HashingWriter:
    """A write-only file that counts and hashes what passes through it."""

    def __init__(self, sink: Writable | None = None) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        if self.sink is not None:
            self.sink.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


class Layout:
    """An OCI image layout folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, path: Path) -> Layout:
        """Open the layout at ``path``, making an empty one if there is none."""
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (path / "oci-layout").is_file():
            atomic_write_text(path / "oci-layout", '{"imageLayoutVersion":"1.0.0"}')
        if not (path / "index.json").is_file():
            atomic_write_text(path / "index.json", canonical_json(_empty_index()).decode())
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> Layout:
        if not (path / "oci-layout").is_file() or not (path / "index.json").is_file():
            raise LayoutError(f"{path} is not an OCI image layout", "expected oci-layout and index.json")
        return cls(path)

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.path / "blobs" / algorithm / hexdigest

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    @contextmanager
    def blob_writer(self) -> Iterator[HashingWriter]:
        """Stream a blob in; on success it is renamed to its digest, on failure it is gone."""
        folder = self.path / "blobs" / "sha256"
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".incoming.", dir=folder)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                writer = HashingWriter(handle)
                yield writer
                handle.flush()
                os.fsync(handle.fileno())
            tmp.chmod(0o644)
            tmp.replace(self.blob_path(writer.digest))
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        with self.blob_writer() as writer:
            writer.write(data)
        return Descriptor(media_type, writer.digest, writer.size)

    def put_json(self, data: Any, media_type: str) -> Descriptor:
        return self.put_bytes(canonical_json(data), media_type)

    def import_blob(self, source: Layout, descriptor: Descriptor) -> None:
        """Bring a blob over from another layout: a hard link when possible, a copy otherwise."""
        target = self.blob_path(descriptor.digest)
        if target.is_file():
            return
        origin = source.blob_path(descriptor.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".incoming.{target.name}.{os.getpid()}")
        try:
            try:
                os.link(origin, tmp)
            except OSError:
                shutil.copyfile(origin, tmp)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)

    def read_blob(self, digest: str) -> bytes:
        """A blob's bytes, checked against its digest."""
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise LayoutError(
                f"{self.path}: blob {digest} is missing", "rebuild or re-pull the image"
            ) from None
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise LayoutError(
                f"{self.path}: blob {digest} is corrupted (its content hashes to {actual})",
                "delete the layout (or the cache) and build again; the blob was not used",
            )
        return data

    def verify_blob(self, descriptor: Descriptor) -> None:
        """Check a (large) blob's digest and size by streaming it."""
        path = self.blob_path(descriptor.digest)
        writer = HashingWriter()
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    writer.write(chunk)
        except FileNotFoundError:
            raise LayoutError(f"{self.path}: blob {descriptor.digest} is missing") from None
        if writer.digest != descriptor.digest or writer.size != descriptor.size:
            raise LayoutError(
                f"{self.path}: blob {descriptor.digest} is corrupted (hashes to {writer.digest}, "
                f"{writer.size} bytes)",
                "delete the layout (or the cache) and build again; the blob was not used",
            )

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read_blob(digest))

    def index(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.path / "index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LayoutError(f"{self.path}/index.json is unreadable: {exc}") from None
        return data

    def tag(self, descriptor: Descriptor, names: tuple[str, ...]) -> None:
        """Point each ref name at ``descriptor`` (moving it from any other manifest)."""
        index = self.index()
        kept = [m for m in index.get("manifests", []) if m.get("annotations", {}).get(REF_NAME) not in names]
        for name in names:
            entry = Descriptor(descriptor.media_type, descriptor.digest, descriptor.size, {REF_NAME: name})
            kept.append(entry.to_json())
        index["manifests"] = sorted(
            kept, key=lambda m: (m.get("annotations", {}).get(REF_NAME, ""), m["digest"])
        )
        atomic_write_text(self.path / "index.json", canonical_json(index).decode())

    def resolve(self, ref: str) -> Descriptor:
        """The manifest descriptor for a ref name or a digest."""
        for entry in self.index().get("manifests", []):
            if ref in (entry.get("annotations", {}).get(REF_NAME), entry["digest"]):
                return Descriptor.from_json(entry)
        raise LayoutError(f"{self.path}: no image {ref!r} in this layout", "list it with: cat index.json")


def _empty_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": []}
