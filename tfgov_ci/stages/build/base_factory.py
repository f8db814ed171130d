"""The central base image: a distroless Python runtime from Debian packages, optionally with
TensorFlow, locked and reproducible.

``tfgov-ci base build`` resolves the package closure of a few root packages with apt (first
alternative of each dependency; packaging tools such as dpkg and perl dropped: nothing runs
maintainer scripts in a distroless image), downloads each .deb once (checked against the lock),
and writes their files into one deterministic layer with a non-root user, /etc/os-release and a
dpkg status file that lists exactly what is inside, so that scanners see it. TensorFlow, when
asked for, comes from locked wheels in a layer of its own. The lock (package versions and .deb
hashes, the wheel lock's digest, the timestamp) makes a rebuild give the same digest.

The same factory makes the CI tools image (``tools-image/`` in the project): other Python
packages than TensorFlow (``wheels``), wheels built from source in the run (``wheels.build``: the
commit is their lock), packages from another Debian suite (``debian.suites``, e.g. cosign from
sid), a shell kept (``debian.exclude``), the CA bundle that ``update-ca-certificates`` would write,
and its own entrypoint and command (``config``).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from tfgov_ci import __version__, _resources, tools
from tfgov_ci._files import atomic_write_json, load_yaml, schema_problems
from tfgov_ci.errors import ConfigError, Problem, TfgovError
from tfgov_ci.oci import image as oci_image
from tfgov_ci.oci.layer import DEFAULT_COMPRESSLEVEL, LayerBuilder
from tfgov_ci.oci.layout import Layout
from tfgov_ci.wheels import (
    Target,
    WheelCache,
    download_argv,
    install_into,
    lock_digest,
    manylinux_platforms,
    normalise_name,
    parse_lock,
)

BASE_CONFIG_NAME = "tfgov-base.yaml"
LOCK_SCHEMA_VERSION = 1
# Only maintainer scripts need these; a distroless image has no shell and no package manager.
DEFAULT_EXCLUDE = (
    "dpkg",
    "install-info",
    "perl",
    "perl-base",
    "perl-modules-5.36",
    "libperl5.36",
    "tar",
    "debconf",
    "bash",
    "dash",
    "coreutils",
    "sensible-utils",
)
# Kept from /usr/share/doc: the licence texts. Dropped: the rest of doc, man, info, lintian.
_DROP = re.compile(r"^usr/share/(man|info|lintian)(/|$)|^usr/share/doc/[^/]+/(?!copyright$)")
NONROOT = 65532


class BaseBuildError(TfgovError):
    """The base image could not be built as its definition and lock say."""


@dataclass(frozen=True)
class BaseDefinition:
    file: Path
    name: str
    registry: str | None
    repository: str
    packages: tuple[str, ...]
    exclude: tuple[str, ...]
    python: str
    tf_requirements: Path | None  # the locked wheels' requirements (``tensorflow`` or ``wheels``)
    tf_lock: Path | None
    lock: Path
    registries: Mapping[str, Mapping[str, Any]]
    # Packages of another suite of the machine's Debian mirror, suite -> names (their own
    # dependencies must already be in the closure: they are checked, not resolved there).
    suites: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Python projects built into wheels in the run (no dependencies: those are in the lock).
    build_wheels: tuple[Path, ...] = ()
    entrypoint: tuple[str, ...] | None = None  # None: the Python executable
    cmd: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def python_executable(self) -> str:
        return f"/usr/bin/python{self.python}"

    @property
    def site_packages(self) -> str:
        return f"/usr/local/lib/python{self.python}/dist-packages"


def load_definition(path: Path) -> BaseDefinition:
    doc = load_yaml(path)
    problems = schema_problems(doc, "base")
    if problems:
        raise ConfigError(problems)
    data, here = doc.data, path.resolve().parent
    if "tensorflow" in data and "wheels" in data:
        raise ConfigError(
            [Problem(str(path), "wheels", "give tensorflow or wheels, not both", "one locked wheel layer")]
        )
    tf = data.get("tensorflow") or data.get("wheels")
    config = data.get("config", {})
    suites = data["debian"].get("suites", {})
    return BaseDefinition(
        file=path.resolve(),
        name=data["image"]["name"],
        registry=data["image"].get("registry"),
        repository=data["image"].get("repository", data["image"]["name"]),
        packages=tuple(data["debian"]["packages"]),
        exclude=tuple(data["debian"].get("exclude", DEFAULT_EXCLUDE)),
        python=data["python"],
        tf_requirements=here / tf["requirements"] if tf and "requirements" in tf else None,
        tf_lock=here / tf["lock"] if tf else None,
        lock=here / data.get("lock", "tfgov-base.lock.json"),
        registries={
            h: {**s, **({"ca_file": str(here / s["ca_file"])} if "ca_file" in s else {})}
            for h, s in data.get("registries", {}).items()
        },
        suites={suite: tuple(names) for suite, names in sorted(suites.items())},
        build_wheels=tuple((here / p).resolve() for p in (tf or {}).get("build", [])),
        entrypoint=tuple(config["entrypoint"]) if "entrypoint" in config else None,
        cmd=tuple(config["cmd"]) if "cmd" in config else None,
        env=dict(config.get("env", {})),
    )


# --- resolving and locking -------------------------------------------------------------------


def resolve_closure(roots: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    """The packages ``roots`` need, choosing each dependency's first alternative, minus exclusions.

    A dependency group with an excluded alternative (``dpkg | install-info``) is a packaging-tool
    dependency: the whole group is dropped.
    """
    flags = [
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
    ]
    done = tools.run(["apt-cache", "depends", *flags, *roots])
    graph: dict[str, list[list[str]]] = {}
    current: str | None = None
    group: list[str] = []
    for line in done.stdout.splitlines():
        if not line.startswith(" "):
            current = line.strip()
            graph.setdefault(current, [])
            continue
        match = re.match(r"^\s+(\|)?(Pre)?Depends: (\S+)", line)
        if match is None or current is None:
            continue
        group.append(match.group(3))
        if match.group(1) is None:  # the last alternative of the group
            graph[current].append(group)
            group = []
    chosen: list[str] = []
    queue = list(roots)
    while queue:
        name = queue.pop(0)
        if name in chosen or name in exclude:
            continue
        if name.startswith("<"):
            real = name.strip("<>").removesuffix(":any")  # "python3:any": the package, any architecture
            if real not in graph:
                raise BaseBuildError(
                    f"dependency {name} is a virtual package", "name a real provider in debian.packages"
                )
            queue.append(real)
            continue
        chosen.append(name)
        for alternatives in graph.get(name, []):
            if any(alt in exclude for alt in alternatives):
                continue
            queue.append(alternatives[0])
    return sorted(chosen)


def _candidates(packages: list[str], options: list[str]) -> dict[str, tuple[str, str, str]]:
    """name -> (version, .deb file name, sha256) of apt's candidate, from its signed index."""
    policy = tools.run(["apt-cache", *options, "policy", *packages]).stdout
    versions: dict[str, str] = {}
    current = None
    for line in policy.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
        elif current and line.strip().startswith("Candidate:"):
            versions[current] = line.split(":", 1)[1].strip()
    missing = [p for p in packages if versions.get(p, "(none)") == "(none)"]
    if missing:
        raise BaseBuildError(
            f"apt knows no installable version of {', '.join(missing)}", "run `apt-get update`"
        )
    shown = tools.run(
        ["apt-cache", *options, "show", "--no-all-versions", *(f"{p}={versions[p]}" for p in packages)]
    )
    out: dict[str, tuple[str, str, str]] = {}
    for stanza in shown.stdout.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace()
        )
        name = fields.get("Package")
        if name in versions and name not in out:
            out[name] = (versions[name], fields["Filename"].rsplit("/", 1)[-1], fields["SHA256"])
    return out


class DebCache:
    """.deb files by sha256, fetched with ``apt-get download``: from the machine's apt sources, or
    from another suite of its mirror through private lists kept in the cache (the machine's own
    apt configuration is never changed)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def apt_options(self, suite: str | None, *, refresh: bool = False) -> list[str]:
        """apt's options for ``suite`` (none for the machine's own); its lists are fetched when
        missing or ``refresh``."""
        if suite is None:
            return []
        folder = self.root.parent / "apt" / suite
        options = _suite_options(str(folder))
        if refresh or not (folder / ".updated").is_file():
            (folder / "lists" / "partial").mkdir(parents=True, exist_ok=True)
            (folder / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
            line = f"deb [signed-by={DEBIAN_KEYRING}] {_mirror()} {suite} main\n"
            (folder / "sources.list").write_text(line)
            tools.run(["apt-get", "-qq", *options, "update"], timeout=600)
            (folder / ".updated").write_text(line)
        return options

    def get(self, name: str, version: str, sha256: str | None, suite: str | None = None) -> Path:
        if sha256:
            folder = self.root / sha256
            found = sorted(folder.glob("*.deb")) if folder.is_dir() else []
            if found:
                return found[0]
        self.root.mkdir(parents=True, exist_ok=True)
        options = self.apt_options(suite)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".download.") as tmp:
            done = tools.run(_download_argv(name, version, options), cwd=tmp, check=False, timeout=600)
            debs = sorted(Path(tmp).glob("*.deb"))
            if done.returncode != 0 or not debs:
                raise BaseBuildError(
                    f"cannot download {name}={version}: {done.stderr.strip().splitlines()[-1:]}",
                    "the mirror no longer serves this version: `tfgov-ci base build --update-lock`",
                )
            digest = hashlib.sha256(debs[0].read_bytes()).hexdigest()
            if sha256 and digest != sha256:
                raise BaseBuildError(
                    f"{debs[0].name} hashes to {digest}, the lock says {sha256}",
                    "the mirror serves different bytes for the same version: investigate before you trust it",
                )
            folder = self.root / digest
            folder.mkdir(exist_ok=True)
            target = folder / debs[0].name
            debs[0].replace(target)
            return target


DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _suite_options(folder: str) -> list[str]:
    return [
        "-o",
        f"Dir::Etc::sourcelist={folder}/sources.list",
        "-o",
        "Dir::Etc::sourceparts=-",
        "-o",
        f"Dir::State::Lists={folder}/lists",
        "-o",
        f"Dir::Cache={folder}/cache",
        "-o",
        "APT::Sandbox::User=root",
    ]


def _mirror() -> str:
    """The first Debian mirror of the machine's apt sources (deb822 or one-line)."""
    files = [*sorted(Path("/etc/apt/sources.list.d").glob("*")), Path("/etc/apt/sources.list")]
    for file in files:
        text = file.read_text() if file.is_file() else ""
        found = re.search(r"^URIs:\s*(http\S+)", text, re.MULTILINE) or re.search(
            r"^deb\s+(?:\[[^\]]*\]\s+)?(http\S+)", text, re.MULTILINE
        )
        if found:
            return found.group(1)
    raise BaseBuildError(
        "no Debian mirror in /etc/apt/sources.list(.d)", "debian.suites needs the machine's mirror"
    )


def _suite_closure(debs: DebCache, definition: BaseDefinition, closure: list[str]) -> list[tuple[str, str]]:
    """(name, suite) of every package of another suite; each of its dependencies must already be
    in the closure (or be excluded): they are not resolved in that suite, so that one libc serves
    the image."""
    out = []
    for suite, names in definition.suites.items():
        options = debs.apt_options(suite, refresh=True)
        shown = tools.run(["apt-cache", *options, "depends", *names]).stdout
        current = None
        for line in shown.splitlines():
            if not line.startswith(" "):
                current = line.strip()
                continue
            match = re.match(r"^\s+(\|)?(Pre)?Depends: <?([^\s>]+)>?", line)
            if match is None or match.group(1):  # other lines; "|": an alternative follows
                continue
            dep = match.group(3).removesuffix(":any")
            if dep not in closure and dep not in definition.exclude:
                raise BaseBuildError(
                    f"{current} ({suite}) depends on {dep}, which the image does not hold",
                    f"add {dep} to debian.packages (it is resolved in the machine's own suite)",
                )
        out += [(name, suite) for name in names]
    return out


def make_lock(definition: BaseDefinition, debs: DebCache, epoch: int) -> dict[str, Any]:
    names = resolve_closure(definition.packages, definition.exclude)
    candidates = _candidates(names, [])
    packages = []
    for name in names:
        version, filename, sha256 = candidates[name]
        debs.get(name, version, sha256)  # fetched now, so that a lock never names what cannot be had
        packages.append({"name": name, "version": version, "file": filename, "sha256": sha256})
    for name, suite in _suite_closure(debs, definition, names):
        version, filename, sha256 = _candidates([name], debs.apt_options(suite))[name]
        debs.get(name, version, sha256, suite)
        packages.append(
            {"name": name, "version": version, "file": filename, "sha256": sha256, "suite": suite}
        )
    return {
        "schema_version": LOCK_SCHEMA_VERSION,
        "source_date_epoch": epoch,
        "os_release": Path("/etc/os-release").read_text(),
        "debian_version": Path("/etc/debian_version").read_text(),
        "packages": packages,
        "python_lock": lock_digest(definition.tf_lock) if definition.tf_lock else None,
    }


def read_lock(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise BaseBuildError(f"{path} not found", "create it: `tfgov-ci base build --update-lock`") from None
    except ValueError as exc:
        raise BaseBuildError(f"{path}: not JSON ({exc})") from None
    errors = list(jsonschema.Draft202012Validator(_resources.schema("base-lock")).iter_errors(data))
    if errors:
        raise BaseBuildError(f"{path}: {errors[0].message}", "regenerate it with --update-lock")
    return data


# --- building ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseImage:
    layout: Path
    tag: str
    digest: str
    size: int
    packages: int
    wheels: int


def _control(deb: Path) -> str:
    return tools.run(_control_argv(str(deb))).stdout


def _add_deb(builder: LayerBuilder, deb: Path, tmp: Path) -> list[str]:
    """Every kept file of a .deb into the layer; returns the paths for the dpkg .list file."""
    import tarfile

    tar_path = tmp / (deb.name + ".tar")
    with tar_path.open("wb") as out:
        subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=out, check=True)
    # Left open on purpose: the layer reads members when it is written, inside the same tmp dir.
    archive = tarfile.open(tar_path)  # noqa: SIM115
    paths = []
    for member in archive.getmembers():
        path = member.name.removeprefix("./").rstrip("/")
        if not path or _DROP.match(path):
            continue
        paths.append("/" + path)
        if member.isdir():
            builder.add_dir(path, member.mode & 0o7777)
        elif member.issym():
            builder.add_symlink(path, member.linkname)
        elif member.isfile() or member.islnk():
            target = archive.getmember(member.linkname) if member.islnk() else member

            def opener(m: tarfile.TarInfo = target) -> Any:
                return archive.extractfile(m)

            builder.add_file(path, opener, target.size, member.mode & 0o7777)
        else:
            raise BaseBuildError(
                f"{deb.name}: {path} is a special file", "a base image holds no device files"
            )
    return paths


def planned_commands(definition: BaseDefinition, cache: Path) -> list[tuple[str, list[str], str, bool]]:
    """What :func:`build` runs from a committed lock, in order, as (description, argv, tool,
    optional): each .deb fetched unless cached, its control file read, the wheels fetched unless
    cached. ``<...>``: known when it runs."""
    lock = read_lock(definition.lock)
    out: list[tuple[str, list[str], str, bool]] = []
    for package in lock["packages"]:
        name, version, suite = package["name"], package["version"], package.get("suite")
        options = _suite_options(str(cache / "apt" / suite)) if suite else []
        out.append(
            (
                f"fetch {name} {version}{f' from {suite}' if suite else ''} (skipped when cached)",
                _download_argv(name, version, options),
                "apt-get",
                True,
            )
        )
        out.append(
            (
                f"read {name}'s control file",
                _control_argv(f"{cache / 'debs'}/<sha256>/<deb file>"),
                "dpkg-deb",
                False,
            )
        )
    if definition.tf_lock:
        argv = download_argv(
            definition.python,
            ["<*--platform of the base>"],
            [],
            f"{cache / 'wheels'}/<temporary dir>/wheels",
            f"{cache / 'wheels'}/<temporary dir>/requirements.txt",
        )
        out.append(("fetch the locked wheels, hashes checked (skipped when cached)", argv, "pip", True))
    for index, project in enumerate(definition.build_wheels):
        argv = _wheel_argv(str(project), f"<temporary dir>/wheel-{index}")
        out.append((f"build {project.name}'s wheel from this commit (no dependencies)", argv, "pip", False))
    return out


def _download_argv(name: str, version: str, options: list[str] | None = None) -> list[str]:
    return ["apt-get", *(options or []), "download", f"{name}={version}"]


def _control_argv(deb: str) -> list[str]:
    return ["dpkg-deb", "-f", deb]


def build(
    definition: BaseDefinition,
    out: Path,
    cache: Path,
    *,
    update_lock: bool = False,
    compresslevel: int = DEFAULT_COMPRESSLEVEL,
) -> BaseImage:
    debs = DebCache(cache / "debs")
    if update_lock or not definition.lock.is_file():
        atomic_write_json(definition.lock, make_lock(definition, debs, _epoch()))
    lock = read_lock(definition.lock)
    if definition.tf_lock and lock["python_lock"] != lock_digest(definition.tf_lock):
        raise BaseBuildError(
            f"{definition.lock} was made for another {definition.tf_lock.name}",
            "rebuild the lock: --update-lock",
        )
    in_lock = {package["name"] for package in lock["packages"]}
    roots = [*definition.packages, *(n for names in definition.suites.values() for n in names)]
    missing = [name for name in roots if name not in in_lock]
    if missing:
        raise BaseBuildError(
            f"{definition.lock} has no {', '.join(missing)}: it was made for another {definition.file.name}",
            "rebuild the lock: --update-lock",
        )
    epoch = int(lock["source_date_epoch"])
    layout = Layout.create(out)
    glibc = (2, 36)
    status_entries = []
    system = LayerBuilder(epoch)
    with tempfile.TemporaryDirectory(prefix="tfgov-base.") as tmpdir:
        tmp = Path(tmpdir)
        for package in lock["packages"]:
            deb = debs.get(package["name"], package["version"], package["sha256"], package.get("suite"))
            control = _control(deb).rstrip("\n")
            status_entries.append(_status_stanza(control))
            listed = _add_deb(system, deb, tmp)
            system.add_bytes(f"var/lib/dpkg/info/{package['name']}.list", ("\n".join(listed) + "\n").encode())
            if package["name"] == "libc6":
                glibc = _glibc(package["version"])
            if package["name"] == "ca-certificates":
                # what its maintainer script (update-ca-certificates) would write: every
                # certificate it ships, in path order, one bundle
                system.add_bytes("etc/ssl/certs/ca-certificates.crt", _ca_bundle(deb, tmp))
        _add_system_files(system, definition, lock, status_entries)
        layers = [
            (system.write(layout, compresslevel), f"tfgov-ci base: {len(lock['packages'])} Debian packages")
        ]
        target = Target(
            definition.python,
            tuple(manylinux_platforms(glibc)),
            definition.site_packages,
            "/usr/local/bin",
            definition.python_executable,
        )
        wheels_count = 0
        tf_version = None
        python_packages: list[str] = []
        built_packages: list[str] = []
        if definition.tf_lock:
            locked = parse_lock(definition.tf_lock)
            wheels = WheelCache(cache / "wheels").fetch(locked, target)
            python_layer = LayerBuilder(epoch)
            for req in locked:
                install_into(python_layer, wheels[req.name], target)
                python_packages.append(f"{req.name}=={req.version}")
                if req.name.startswith("tensorflow"):
                    tf_version = req.version
            built_wheels = _build_wheels(definition.build_wheels, cache / "wheels", tmp, epoch)
            for wheel in built_wheels:
                name, version = wheel.name.split("-")[:2]
                install_into(python_layer, wheel, target)
                python_packages.append(f"{normalise_name(name)}=={version}")
                built_packages.append(f"{normalise_name(name)}=={version}")
            wheels_count = len(locked) + len(built_wheels)
            layers.append(
                (python_layer.write(layout, compresslevel), f"tfgov-ci base: {wheels_count} locked wheels")
            )
    labels = {
        "org.opencontainers.image.title": definition.name,
        "org.opencontainers.image.created": oci_image.rfc3339(epoch),
        "org.opencontainers.image.version": f"python{definition.python}"
        + (f"-tf{tf_version}" if tf_version else ""),
        "io.tfgov.base.lock": lock_digest(definition.lock),
        "io.tfgov.python.version": definition.python,
        "io.tfgov.python.executable": definition.python_executable,
        "io.tfgov.python.site-packages": definition.site_packages,
        "io.tfgov.python.scripts": "/usr/local/bin",
        "io.tfgov.python.platform": target.platforms[0],
        "io.tfgov.builder": f"tfgov-ci {__version__}",
    }
    if tf_version:
        labels["io.tfgov.tensorflow.version"] = tf_version
    # What the base already provides: model images' locks must keep these versions (constraints),
    # and the native builder does not install them again.
    labels["io.tfgov.python.packages"] = ",".join(sorted(python_packages))
    if built_packages:
        # built from this commit's source, not from the lock: the sbom stage's drift check
        # expects exactly these beside the lock's
        labels["io.tfgov.python.built"] = ",".join(sorted(built_packages))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(definition.env)
    process: dict[str, Any] = {}
    entrypoint = (definition.python_executable,) if definition.entrypoint is None else definition.entrypoint
    if entrypoint:
        process["Entrypoint"] = list(entrypoint)
    if definition.cmd is not None:
        process["Cmd"] = list(definition.cmd)
    config = oci_image.append_layers(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "User": f"{NONROOT}:{NONROOT}",
                "Env": [f"{k}={v}" for k, v in env.items()],
                **process,
                "WorkingDir": "/home/nonroot",
                "Labels": labels,
            },
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        },
        layers,
        epoch,
    )
    written = oci_image.write_image(layout, config, [layer.descriptor for layer, _ in layers])
    tag = (
        f"python{definition.python}"
        + (f"-tf{tf_version}" if tf_version else "")
        + f"-{lock_digest(definition.lock)[7:19]}"
    )
    layout.tag(written.manifest, (tag,))
    size = sum(layer.descriptor.size for layer, _ in layers)
    return BaseImage(out, tag, written.manifest.digest, size, len(lock["packages"]), wheels_count)


def default_layout(definition: BaseDefinition) -> Path:
    """Where ``tfgov-ci base build`` writes the layout unless told: .tfgov/base/oci beside the
    definition."""
    from tfgov_ci.context import TFGOV_DIR

    return definition.file.parent / TFGOV_DIR / "base" / "oci"


def publish(definition: BaseDefinition, built: BaseImage) -> str | None:
    """Push ``built`` to the definition's registry, tagged with its tag; the pinned reference to
    put in tfgov.yaml (``base.image``), or None when the definition names no registry."""
    from tfgov_ci.oci.reference import Reference
    from tfgov_ci.oci.registry import push_layout

    if not definition.registry:
        return None
    target = Reference(definition.registry, definition.repository)
    pushed = push_layout(built.layout, built.tag, built.digest, target, (built.tag,), definition.registries)
    reference: str = pushed["reference"]
    return reference


def _wheel_argv(project: str, dest: str) -> list[str]:
    return ["pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dest, project]


def _build_wheels(projects: tuple[Path, ...], cache: Path, tmp: Path, epoch: int) -> list[Path]:
    """Each project's wheel, built with this Python's pip at the lock's timestamp (a build backend
    that honours SOURCE_DATE_EPOCH, such as hatchling, then gives the same bytes every time)."""
    import os
    import sys

    out = []
    for index, project in enumerate(projects):
        if not (project / "pyproject.toml").is_file():
            raise BaseBuildError(
                f"wheels.build: {project} has no pyproject.toml", "name the folder of a Python project"
            )
        dest = tmp / f"wheel-{index}"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
        done = tools.run(
            _wheel_argv(str(project), str(dest)),
            executable=[sys.executable, "-m", "pip"],
            env=env,
            check=False,
            timeout=1800,
        )
        wheels = sorted(dest.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise BaseBuildError(
                f"cannot build the wheel of {project}: {done.stderr.strip().splitlines()[-1:]}",
                "`pip wheel --no-deps` must work in that folder (its build backend comes from PyPI)",
            )
        out.append(wheels[0])
    return out


def _ca_bundle(deb: Path, tmp: Path) -> bytes:
    """The certificates a ca-certificates .deb ships, concatenated in path order, as
    update-ca-certificates writes /etc/ssl/certs/ca-certificates.crt (every one enabled)."""
    import tarfile

    tar_path = tmp / (deb.name + ".certs.tar")
    with tar_path.open("wb") as out:
        subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=out, check=True)
    parts = []
    with tarfile.open(tar_path) as archive:
        members = [
            m
            for m in archive.getmembers()
            if m.isfile()
            and m.name.removeprefix("./").startswith("usr/share/ca-certificates/")
            and m.name.endswith(".crt")
        ]
        for member in sorted(members, key=lambda m: m.name):
            handle = archive.extractfile(member)
            text = handle.read() if handle else b""
            parts.append(text if text.endswith(b"\n") else text + b"\n")
    if not parts:
        raise BaseBuildError(f"{deb.name} holds no certificates", "is it Debian's ca-certificates?")
    return b"".join(parts)


def _epoch() -> int:
    import os
    import time

    return int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())


def _glibc(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else (2, 36)


def _status_stanza(control: str) -> str:
    lines = control.splitlines()
    # dpkg's status file: the control fields with Status after Package.
    return "\n".join([lines[0], "Status: install ok installed", *lines[1:]])


def _add_system_files(
    builder: LayerBuilder, definition: BaseDefinition, lock: dict[str, Any], stanzas: list[str]
) -> None:
    builder.add_bytes("etc/os-release", lock["os_release"].encode())
    builder.add_bytes("etc/debian_version", lock["debian_version"].encode())
    builder.add_bytes(
        "etc/passwd",
        (
            f"root:x:0:0:root:/root:/sbin/nologin\n"
            f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
        ).encode(),
    )
    builder.add_bytes("etc/group", f"root:x:0:\nnonroot:x:{NONROOT}:\n".encode())
    builder.add_bytes("var/lib/dpkg/status", ("\n\n".join(sorted(stanzas)) + "\n").encode())
    builder.add_dir("tmp", 0o1777)
    builder.add_dir("root", 0o700)
    builder.add_dir("home/nonroot", 0o755, uid=NONROOT)
    builder.add_dir("proc")
    builder.add_dir("dev")
    builder.add_dir("sys")
    builder.add_symlink("usr/bin/python3", f"python{definition.python}")
    builder.add_symlink("usr/bin/python", f"python{definition.python}")
