"""The image's catalogue from its layers' catalogues: each layer catalogued by syft once, then merged.

A layer is catalogued alone, as a one-layer image (its config's ``rootfs`` naming only it), and
what syft says (its own JSON) is kept in the cache under the layer's diff id and syft's version,
beside the layer's path index (every file and link, every whiteout, the files the wheels' RECORD
files own), read from the same pass over the layer. A code change then catalogues one small layer:
the base's and the dependencies' layers, unchanged, are read from the cache.

:func:`merge` joins the layers' catalogues into the one syft's whole-image scan gives (the same
artifacts, files and relationships; a test holds the two equal): every layer's artifacts and files,
each layer's relationships with the one-layer image's id replaced by the image's, and the
relationships syft draws between the packages of several layers, which a layer alone cannot see:
Python's ``dependency-of`` (syft 1.18's rule: within one site-packages folder, a package provides
its name and requires each ``Requires-Dist`` entry cut at ``(`` or ``;``).

Where that merge cannot be trusted it says why (:class:`Untrusted`) and the stage scans the whole
image: a layer deletes (whiteouts) or replaces a file of a layer below it, as Dockerfile builds do;
OS packages in a layer other than the one holding the distribution's ``os-release``; packages of a
kind whose links syft draws across the catalogue (OS packages, npm, ...) in more than one layer; a
file an OS package owns in one layer catalogued as a package in another; a virtual environment.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import json
import posixpath
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfgov_ci._files import atomic_write_json
from tfgov_ci.oci.layout import MEDIA_CONFIG, MEDIA_MANIFEST, Descriptor, Layout

CACHE = "sbom-layers"  # <cache>/sbom-layers/<syft version>/<diff id hex>.json

# Container runtimes mount these over whatever the image holds; builders leave empty ones behind in
# several layers. No cataloguer reads them.
RUNTIME_FILES = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"})
# syft's package types whose relationships (dependency-of, file ownership) it draws over the whole
# catalogue, with a rule this module does not reproduce: in more than one layer, the merge would
# miss a link, so the whole image is scanned. Python's rule is reproduced (python_dependencies).
OS_TYPES = frozenset({"deb", "rpm", "apk", "alpm", "portage"})
LINKED_TYPES = OS_TYPES | {"npm", "hex", "conan", "dotnet", "cargo", "go-module"}
OS_RELEASE = frozenset({"/etc/os-release", "/usr/lib/os-release"})


@dataclass(frozen=True)
class LayerIndex:
    """What one layer holds, by path (read from its tar in one pass)."""

    files: frozenset[str]  # regular files and links
    whiteouts: frozenset[str]  # paths it deletes (``.wh.<name>``; a folder + "/" for an opaque one)
    owned: frozenset[str]  # files a wheel's RECORD in this layer lists
    size: int  # its files' sizes added up: what syft reports as the layer's size

    def to_json(self) -> dict[str, Any]:
        return {
            "files": sorted(self.files),
            "whiteouts": sorted(self.whiteouts),
            "owned": sorted(self.owned),
            "size": self.size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerIndex:
        return cls(
            frozenset(data["files"]),
            frozenset(data["whiteouts"]),
            frozenset(data["owned"]),
            int(data["size"]),
        )

    @classmethod
    def read(cls, blob: Path) -> LayerIndex:
        files: set[str] = set()
        whiteouts: set[str] = set()
        owned: set[str] = set()
        size = 0
        with blob.open("rb") as handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
            for member in tar:
                size += member.size
                path = "/" + member.name.removeprefix("./").lstrip("/")
                name = posixpath.basename(path)
                if name == ".wh..wh..opq":
                    whiteouts.add(posixpath.dirname(path).rstrip("/") + "/")
                elif name.startswith(".wh."):
                    whiteouts.add(posixpath.join(posixpath.dirname(path), name[4:]))
                elif member.isfile() or member.issym() or member.islnk():
                    files.add(path)
                    if member.isfile() and path.endswith(".dist-info/RECORD"):
                        extracted = tar.extractfile(member)
                        owned.update(_record_paths(path, extracted.read() if extracted else b""))
        return cls(frozenset(files), frozenset(whiteouts), frozenset(owned), size)


def _record_paths(record_path: str, record: bytes) -> Iterator[str]:
    """The files a wheel's RECORD lists, as absolute paths (RECORD's paths are site-relative)."""
    site = posixpath.dirname(posixpath.dirname(record_path))
    for line in record.decode(errors="replace").splitlines():
        relative = line.rsplit(",", 2)[0] if line.count(",") >= 2 else line
        if relative:
            yield posixpath.normpath(posixpath.join(site, relative))


@dataclass(frozen=True)
class LayerCatalogue:
    diff_id: str
    media_type: str  # the layer's, as the image's manifest has it
    index: LayerIndex
    syft: dict[str, Any]  # syft's JSON for the layer alone


@dataclass(frozen=True)
class Untrusted:
    """Why the layers' catalogues cannot be merged into the image's: scan the whole image instead."""

    reason: str


class Cache:
    """The layers' catalogues, by syft's version and diff id (one JSON file each, written whole)."""

    def __init__(self, root: Path, syft_version: str) -> None:
        self.dir = root / CACHE / _safe(syft_version)

    def path(self, diff_id: str) -> Path:
        return self.dir / f"{diff_id.removeprefix('sha256:')}.json"

    def get(self, diff_id: str, media_type: str) -> LayerCatalogue | None:
        try:
            data = json.loads(self.path(diff_id).read_text())
            if data.get("diff_id") != diff_id:
                return None
            return LayerCatalogue(diff_id, media_type, LayerIndex.from_json(data["index"]), data["syft"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none yet, or unreadable: catalogue the layer again

    def put(self, diff_id: str, index: LayerIndex, syft: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            self.path(diff_id), {"diff_id": diff_id, "index": index.to_json(), "syft": syft}, compact=True
        )


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-_" else "-" for c in text) or "unknown"


def one_layer_image(
    source: Layout, config: dict[str, Any], layer: dict[str, Any], diff_id: str, into: Path
) -> Layout:
    """A layout holding one image whose only layer is ``layer`` (its blob linked, not copied)."""
    return partial_image(source, config, [(layer, diff_id)], into)


def partial_image(
    source: Layout, config: dict[str, Any], entries: Sequence[tuple[dict[str, Any], str]], into: Path
) -> Layout:
    """A layout holding one image of these layers (descriptor, diff id), bottom first: one layer
    alone, or the image's first layers, its base (blobs linked, not copied)."""
    single = Layout.create(into)
    for layer, _ in entries:
        single.import_blob(source, Descriptor.from_json(layer))
    # The platform only: labels and history change with every commit, and nothing syft catalogues
    # reads them, so the one-layer image is the same whatever commit the layer came with.
    alone: dict[str, Any] = {key: config[key] for key in ("architecture", "os", "variant") if key in config}
    alone["rootfs"] = {"type": "layers", "diff_ids": [diff_id for _, diff_id in entries]}
    config_descriptor = single.put_json(alone, MEDIA_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_descriptor.to_json(),
        "layers": [layer for layer, _ in entries],
    }
    single.tag(single.put_json(manifest, MEDIA_MANIFEST), ("image",))
    return single


Syft = Callable[[Path, Path], dict[str, Any]]  # (one-layer layout, output file) -> syft's JSON


class Layers:
    """An image's layers, bottom first: each one's index and catalogue, from the cache or made once."""

    def __init__(
        self, layout: Layout, digest: str, cache: Cache, fetch: Callable[[str], None] | None = None
    ) -> None:
        """``layout`` holds the manifest and config; ``fetch(digest)`` brings a layer's blob into it
        before it is read (from the registry the build pushed to: only layers not in the cache)."""
        self.layout, self.digest, self.cache = layout, digest, cache
        self.fetch = fetch or (lambda digest: None)
        self.manifest = layout.read_json(digest)
        self.config = layout.read_json(self.manifest["config"]["digest"])
        diff_ids = self.config.get("rootfs", {}).get("diff_ids", [])
        self.entries: list[tuple[dict[str, Any], str]] = list(
            zip(self.manifest["layers"], diff_ids, strict=True)
        )
        self._indices: dict[int, LayerIndex] = {}
        self._catalogues: dict[int, LayerCatalogue] = {}
        self.catalogued = 0  # layers syft catalogued in this run (the others came from the cache)
        for number, (layer, diff_id) in enumerate(self.entries):
            cached = cache.get(diff_id, layer["mediaType"])
            if cached is not None:
                self._catalogues[number] = cached
                self._indices[number] = cached.index

    def counts(self) -> dict[str, int]:
        return {
            "layers": len(self.entries),
            "catalogued": self.catalogued,
            "cached": len(self.entries) - self.catalogued,
        }

    def indices(self) -> list[LayerIndex]:
        """Every layer's index; the layers not in the cache are read (two at a time)."""
        missing = [n for n in range(len(self.entries)) if n not in self._indices]
        with ThreadPoolExecutor(max_workers=2) as pool:
            for number, index in zip(missing, pool.map(self._index, missing), strict=True):
                self._indices[number] = index
        return [self._indices[n] for n in range(len(self.entries))]

    def catalogues(self, numbers: Iterable[int], syft: Syft) -> list[LayerCatalogue]:
        """These layers' catalogues; syft catalogues the ones the cache lacks (two at a time), while
        this thread reads the indices still missing."""
        wanted = list(numbers)
        missing = [n for n in wanted if n not in self._catalogues]
        if missing:
            with (
                tempfile.TemporaryDirectory(prefix=".layers.", dir=self.layout.path.parent) as tmp,
                ThreadPoolExecutor(max_workers=2) as pool,
            ):
                # Each task in a copy of this context, so that the commands it runs are recorded.
                tasks = [
                    pool.submit(contextvars.copy_context().run, self._scan, n, Path(tmp), syft)
                    for n in missing
                ]
                indices = self.indices()
                for number, task in zip(missing, tasks, strict=True):
                    layer, diff_id = self.entries[number]
                    found = task.result()
                    self.cache.put(diff_id, indices[number], found)
                    self._catalogues[number] = LayerCatalogue(
                        diff_id, layer["mediaType"], indices[number], found
                    )
                    self.catalogued += 1
        return [self._catalogues[n] for n in wanted]

    def _index(self, number: int) -> LayerIndex:
        digest = self.entries[number][0]["digest"]
        self.fetch(digest)
        return LayerIndex.read(self.layout.blob_path(digest))

    def _scan(self, number: int, tmp: Path, syft: Syft) -> dict[str, Any]:
        layer, diff_id = self.entries[number]
        self.fetch(layer["digest"])
        single = one_layer_image(self.layout, self.config, layer, diff_id, tmp / str(number) / "oci")
        return syft(single.path, tmp / str(number) / "syft.json")

    def catalogue(
        self, user_input: str, name: str, version: str, base_layers: int, syft: Syft
    ) -> dict[str, Any] | Untrusted:
        """The image's catalogue as syft's whole-image scan with ``--source-name name
        --source-version version`` of ``user_input`` gives it, or why the layers' cannot be trusted.
        The base's layers are catalogued while every layer's index is read; the layers on it only
        once the indices say the merge can be trusted (else the whole image is scanned)."""
        self.catalogues(range(min(base_layers, len(self.entries))), syft)
        problem = path_problem(self.indices())
        if problem is not None:
            return problem
        catalogues = self.catalogues(range(len(self.entries)), syft)
        return merge(
            catalogues, image_source(self.layout, self.digest, catalogues, name, version, user_input)
        )

    def base_image(self, base_layers: int, into: Path) -> Layout:
        """The image's first ``base_layers`` layers as an image of their own (its base)."""
        for layer, _ in self.entries[:base_layers]:
            self.fetch(layer["digest"])
        return partial_image(self.layout, self.config, self.entries[:base_layers], into)

    def base_artifacts(self, base_layers: int, syft: Syft) -> list[dict[str, Any]] | None:
        """The packages of the image's first ``base_layers`` layers (its base), or None when their
        catalogues cannot be merged."""
        if path_problem(self.indices()[:base_layers]) is not None:
            return None
        catalogues = self.catalogues(range(base_layers), syft)
        if package_problem(catalogues) is not None:
            return None
        found: dict[str, dict[str, Any]] = {}
        for catalogue in catalogues:
            for artifact in catalogue.syft.get("artifacts", []):
                found.setdefault(artifact["id"], artifact)
        return list(found.values())


def merge(layers: Sequence[LayerCatalogue], source: dict[str, Any]) -> dict[str, Any] | Untrusted:
    """syft's JSON for the image whose layers these are, bottom first, or why it cannot be trusted.
    ``source``: the image's own ``source`` block (:func:`image_source`)."""
    problem = path_problem([layer.index for layer in layers]) or package_problem(layers)
    if problem is not None:
        return problem
    artifacts: dict[str, dict[str, Any]] = {}
    files: dict[str, dict[str, Any]] = {}
    relationships: dict[tuple[str, str, str], dict[str, Any]] = {}
    distro: dict[str, Any] = {}
    for layer in layers:
        doc = layer.syft
        own = doc.get("source", {}).get("id")
        python = {a["id"] for a in doc.get("artifacts", []) if a.get("type") == "python"}
        for artifact in doc.get("artifacts", []):
            artifacts.setdefault(artifact["id"], artifact)
        for entry in doc.get("files", []):
            files.setdefault(entry["id"], entry)
        for link in doc.get("artifactRelationships", []):
            if link.get("type") == "dependency-of" and {link["parent"], link["child"]} <= python:
                continue  # drawn again below, over every layer's packages
            if link.get("parent") == own:
                link = {**link, "parent": source["id"]}
            relationships.setdefault((link["parent"], link["child"], link["type"]), link)
        distro = distro or doc.get("distro") or {}
    for link in python_dependencies(list(artifacts.values())):
        relationships.setdefault((link["parent"], link["child"], link["type"]), link)
    first = layers[0].syft if layers else {}
    merged = {
        "artifacts": sorted(artifacts.values(), key=_artifact_order),
        "artifactRelationships": sorted(relationships.values(), key=_link_order),
        "files": sorted(files.values(), key=lambda f: (f.get("location", {}).get("path", ""), f["id"])),
        "source": source,
        "distro": distro,
        "descriptor": first.get("descriptor", {}),
        "schema": first.get("schema", {}),
    }
    return merged


def _artifact_order(artifact: dict[str, Any]) -> tuple[str, str, str, str]:
    return (artifact.get("name", ""), artifact.get("version", ""), artifact.get("type", ""), artifact["id"])


def _link_order(link: dict[str, Any]) -> tuple[str, str, str]:
    return (link["parent"], link["child"], link["type"])


def path_problem(indices: Sequence[LayerIndex]) -> Untrusted | None:
    """A layer that deletes or replaces a file of a layer below it."""
    below: dict[str, int] = {}  # path -> the layer holding it
    for number, index in enumerate(indices):
        if number and index.whiteouts:
            example = sorted(index.whiteouts)[0]
            return Untrusted(
                f"layer {number + 1} deletes {len(index.whiteouts)} path(s) of the layers below ({example})"
            )
        replaced = sorted(path for path in index.files - RUNTIME_FILES if path in below)
        if replaced:
            return Untrusted(
                f"layer {number + 1} replaces {len(replaced)} file(s) of the layers below, "
                f"{replaced[0]} of layer {below[replaced[0]] + 1} among them"
            )
        for path in index.files:
            below.setdefault(path, number)
    return None


def package_problem(layers: Sequence[LayerCatalogue]) -> Untrusted | None:
    """Packages whose links or evidence syft would draw across layers by a rule not reproduced here."""
    holding: dict[str, set[int]] = defaultdict(set)  # package type -> layers with one
    for number, layer in enumerate(layers):
        for artifact in layer.syft.get("artifacts", []):
            holding[str(artifact.get("type", ""))].add(number)
    # A virtual environment groups its packages by rules python_dependencies does not reproduce.
    venvs = sorted(path for layer in layers for path in layer.index.files if path.endswith("/pyvenv.cfg"))
    if venvs and holding["python"]:
        return Untrusted(f"a Python virtual environment ({venvs[0]}) beside the image's Python packages")
    releases = {number for number, layer in enumerate(layers) if layer.index.files & OS_RELEASE}
    for kind in sorted(holding):
        spread = holding[kind]
        if kind in OS_TYPES and not spread <= releases:
            return Untrusted(f"{kind} packages in a layer without the distribution's os-release")
        if kind in LINKED_TYPES and len(spread) > 1:
            return Untrusted(f"{kind} packages in {len(spread)} layers (syft links them across layers)")
    owned_by_os: dict[str, int] = {}
    for number, layer in enumerate(layers):
        for artifact in layer.syft.get("artifacts", []):
            if artifact.get("type") in OS_TYPES:
                for entry in (artifact.get("metadata") or {}).get("files") or []:
                    owned_by_os.setdefault(str(entry.get("path", "")), number)
    for number, layer in enumerate(layers):
        for artifact in layer.syft.get("artifacts", []):
            for location in artifact.get("locations", []):
                owner = owned_by_os.get(str(location.get("path", "")))
                if owner is not None and owner != number:
                    return Untrusted(
                        f"{artifact.get('name')} (layer {number + 1}) stands on a file "
                        f"an OS package of layer {owner + 1} owns"
                    )
    return None


def python_dependencies(artifacts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """syft 1.18's ``dependency-of`` links between installed Python packages: per site-packages
    folder, one package a name (of two, the one whose evidence comes last by path: a copy vendored
    inside another package shadows the real one, as in syft), which provides that name; each of its
    ``Requires-Dist`` entries, cut at the first ``(`` or ``;`` and trimmed, requires the package
    providing exactly that name."""
    by_site: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for artifact in sorted(artifacts, key=_primary_path):
        if artifact.get("type") == "python":
            by_site[_site_packages(artifact)][artifact["name"]] = artifact
    links: list[dict[str, Any]] = []
    for packages in by_site.values():
        for package in packages.values():
            required = {
                _cut(str(entry)) for entry in (package.get("metadata") or {}).get("requiresDist") or []
            }
            for name in sorted(required & packages.keys()):
                links.append(
                    {"parent": packages[name]["id"], "child": package["id"], "type": "dependency-of"}
                )
    return links


def _primary_path(artifact: dict[str, Any]) -> str:
    paths = [str(loc.get("path", "")) for loc in artifact.get("locations", []) if _primary(loc)]
    return min(paths, default="")


def _primary(location: dict[str, Any]) -> bool:
    return (location.get("annotations") or {}).get("evidence") == "primary"


def _cut(entry: str) -> str:
    for at, char in enumerate(entry):
        if char in "(;":
            return entry[:at].strip()
    return entry.strip()


def _site_packages(artifact: dict[str, Any]) -> str:
    for location in artifact.get("locations", []):
        if not _primary(location):
            continue
        fields = posixpath.dirname(str(location.get("path", ""))).split("/")
        for at in range(len(fields) - 1, -1, -1):
            if fields[at] in ("site-packages", "dist-packages"):
                return "/".join(fields[: at + 1]).lstrip("/")
    return ""


def image_source(
    layout: Layout,
    manifest_digest: str,
    layers: Sequence[LayerCatalogue],
    name: str,
    version: str,
    user_input: str,
) -> dict[str, Any]:
    """The ``source`` block syft writes for an image it scanned with ``--source-name`` and
    ``--source-version`` (its id: the manifest's digest with that name and version, hashed)."""
    raw_manifest = layout.read_blob(manifest_digest)
    manifest = json.loads(raw_manifest)
    raw_config = layout.read_blob(manifest["config"]["digest"])
    config = json.loads(raw_config)
    alias = f"{manifest_digest}:{name}@{version}"
    # What syft reads of the platform and the tags of an OCI layout (none) is as it said for a layer.
    metadata: dict[str, Any] = dict(layers[0].syft.get("source", {}).get("metadata") or {}) if layers else {}
    metadata.update(
        userInput=user_input,
        imageID=manifest["config"]["digest"],
        manifestDigest=manifest_digest,
        mediaType=manifest.get("mediaType", MEDIA_MANIFEST),
        imageSize=sum(layer.index.size for layer in layers),
        layers=[
            {"mediaType": layer.media_type, "digest": layer.diff_id, "size": layer.index.size}
            for layer in layers
        ],
        manifest=base64.b64encode(raw_manifest).decode(),
        config=base64.b64encode(raw_config).decode(),
    )
    metadata.pop("labels", None)
    labels = (config.get("config") or {}).get("Labels")
    if labels:
        metadata["labels"] = labels
    return {
        "id": hashlib.sha256(alias.encode()).hexdigest(),
        "name": name,
        "version": version,
        "type": "image",
        "metadata": metadata,
    }
