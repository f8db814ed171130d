"""Build benchmark: tfgov-ci's native builder beside `docker build` and `buildah bud`, same run.

All three build the TensorFlow example (tensorflow-cpu 2.21.0 and PyYAML on a Python 3.11 base
with pip) from the same lock, with the same wheels ("warm pip cache": every wheel is fetched once
beforehand; the Dockerfile builds install them from a local find-links server on 127.0.0.1):

- cold: an empty build cache (native: no layer cache; docker: a fresh engine; buildah: fresh
  storage), the base already local;
- warm: one source file changed, the build cache kept;
- bytes uploaded by the warm push, measured as the growth of the registry's storage.

Wall time is the build command's; peak memory is the build process's maximum RSS (docker's work
happens in dockerd, so its client's RSS is not shown). Setup is not timed.
Run: `make bench` (needs `make setup`: docker.io, buildah, skopeo, docker-registry).
"""

from __future__ import annotations

import http.server
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tfgov_ci.oci.registry import push_layout  # noqa: E402
from tfgov_ci.stages.build import base_factory  # noqa: E402
from tfgov_ci.testing.dockerd import LocalDockerd  # noqa: E402
from tfgov_ci.testing.registry import LocalRegistry, free_port  # noqa: E402

DEV_BASE = """version: 1
image: {name: py-dev-base, repository: platform/py-dev-base}
debian:
  packages: [python3.11-minimal, libpython3.11-stdlib, libstdc++6, libgomp1, python3-pip]
python: "3.11"
"""
DOCKERFILE = """FROM {base}
COPY requirements.lock /tmp/requirements.lock
RUN ["/usr/bin/python3", "-m", "pip", "install", "--break-system-packages", "--no-cache-dir", "--no-index", \
"--no-deps", "--require-hashes", "--find-links", "http://127.0.0.1:{port}/", "-r", "/tmp/requirements.lock"]
WORKDIR /app
COPY train.py params.yaml ./
USER 65532:65532
"""


@dataclass
class Timing:
    seconds: float
    max_rss_mb: float


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> Timing:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(output.decode(errors="replace")[-4000:])
        raise SystemExit(f"bench: {' '.join(argv[:4])} failed ({proc.returncode})")
    return Timing(seconds, usage.ru_maxrss / 1024)


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:5])} failed: {done.stderr[-2000:]}")
    return done.stdout


def built_digest(repo: Path) -> str:
    digest: str = json.loads((repo / ".tfgov/out/build/result.json").read_text())["data"]["digest"]
    return digest


def storage_bytes(registry: LocalRegistry) -> int:
    blobs = registry.storage / "docker/registry/v2/blobs"
    return sum(p.stat().st_size for p in blobs.rglob("data")) if blobs.exists() else 0


def git(repo: Path, *args: str) -> None:
    run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args], cwd=repo)


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    port = free_port()
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder))  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def main() -> int:
    for tool in ("dockerd", "docker", "buildah", "skopeo", "docker-registry", "tfgov-ci"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (make setup)", file=sys.stderr)
            return 2
    with (
        tempfile.TemporaryDirectory(prefix="tfgov-bench.", dir="/tmp") as tmpdir,
        LocalRegistry() as registry,
    ):
        tmp = Path(tmpdir)
        cache = tmp / "cache"
        env = {**os.environ, "TFGOV_CACHE_DIR": str(cache), "DOCKER_BUILDKIT": "0"}
        shared = ROOT / ".cache" / "test-cache"  # reuse downloaded .debs and wheels: the "warm pip cache"
        if shared.is_dir():
            for sub in ("debs", "wheels"):
                if (shared / sub).is_dir():
                    shutil.copytree(shared / sub, cache / sub, dirs_exist_ok=True)

        print("bench: setup (not timed): base, lock, wheels, engines", file=sys.stderr)
        (tmp / "platform").mkdir()
        (tmp / "platform" / "tfgov-base.yaml").write_text(DEV_BASE)
        definition = base_factory.load_definition(tmp / "platform" / "tfgov-base.yaml")
        built = base_factory.build(definition, tmp / "platform" / "oci", cache, update_lock=True)
        base_repo = f"{registry.host}/platform/py-dev-base"
        push_layout(built.layout, built.tag, built.digest, base_repo, (built.tag,), {}, env={})

        repo = tmp / "tf-mnist"
        shutil.copytree(
            ROOT / "examples" / "tf-mnist", repo, ignore=shutil.ignore_patterns(".tfgov", "model")
        )
        config = (repo / "tfgov.yaml").read_text()
        pinned = r"registry\.example\.com/platform/tf-base@sha256:[0-9a-f]{64}"
        config = re.sub(pinned, f"{base_repo}@{built.digest}", config).replace(
            "registry.example.com", registry.host
        )
        (repo / "tfgov.yaml").write_text(config)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "bench")
        for stage in ("validate", "lock"):
            run(["tfgov-ci", "run", stage], cwd=repo, env=env)
        wheels = tmp / "wheels"
        wheels.mkdir()
        for wheel in (cache / "wheels").rglob("*.whl"):
            shutil.copy(wheel, wheels / wheel.name)
        server, port = serve(wheels)
        base_local = f"tfgov-bench-base:{built.digest[7:19]}"
        (repo / "Dockerfile").write_text(DOCKERFILE.format(base=base_local, port=port))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "lock and Dockerfile")
        for stage in ("validate", "lock"):  # prime: the lock result for this commit, the base in the cache
            run(["tfgov-ci", "run", stage], cwd=repo, env=env)
        run(["tfgov-ci", "run", "build"], cwd=repo, env=env)  # pulls the base and fetches wheels: warm
        shutil.rmtree(cache / "layers")  # ... then empty the build (layer) cache: cold

        try:
            with LocalDockerd() as engine:
                measured = measure(tmp, repo, env, engine, registry, built, base_local)
        finally:
            server.shutdown()
    report(*measured)
    return 0


def measure(
    tmp: Path,
    repo: Path,
    env: dict[str, str],
    engine: LocalDockerd,
    registry: LocalRegistry,
    built: base_factory.BaseImage,
    base_local: str,
) -> tuple[dict[str, dict[str, Timing]], dict[str, int]]:
    source = f"oci:{built.layout}:{built.tag}"
    run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-daemon-host",
            engine.host,
            source,
            f"docker-daemon:{base_local}",
        ]
    )
    bh = [
        "buildah",
        "--root",
        str(tmp / "buildah"),
        "--runroot",
        str(tmp / "buildah-run"),
        "--storage-driver",
        "vfs",
    ]
    storage = f"containers-storage:[vfs@{tmp / 'buildah'}+{tmp / 'buildah-run'}]localhost/{base_local}"
    run(["skopeo", "copy", "--quiet", source, storage])
    denv = {**env, "DOCKER_HOST": engine.host}
    docker = ["docker", "build", "--network", "host", "-q"]
    bud = [
        *bh,
        "bud",
        "-q",
        "--layers",
        "--isolation",
        "chroot",
        "--pull=never",
        "--ulimit",
        "nofile=20000:20000",
    ]

    results: dict[str, dict[str, Timing]] = {}
    print("bench: cold builds", file=sys.stderr)
    results["native"] = {"cold": timed(["tfgov-ci", "run", "build"], repo, env)}
    results["docker build"] = {"cold": timed([*docker, "-t", "bench:cold", "."], repo, denv)}
    results["buildah bud"] = {"cold": timed([*bud, "-t", "localhost/bench:cold", "."], repo, env)}

    sizes: dict[str, int] = {}
    layout = repo / ".tfgov/out/build/oci"
    sha = run(["git", "rev-parse", "HEAD"], cwd=repo).strip()
    push_layout(layout, sha, built_digest(repo), f"{registry.host}/bench/native", (sha,), {}, env={})
    run(["docker", "tag", "bench:cold", f"{registry.host}/bench/docker:cold"], env=denv)
    run(["docker", "push", "-q", f"{registry.host}/bench/docker:cold"], env=denv)
    run(
        [
            *bh,
            "push",
            "-q",
            "--tls-verify=false",
            "localhost/bench:cold",
            f"docker://{registry.host}/bench/buildah:cold",
        ]
    )

    print("bench: warm builds (train.py changed)", file=sys.stderr)
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# changed\n")
    git(repo, "commit", "-q", "-am", "code change")
    for stage in ("validate", "lock"):
        run(["tfgov-ci", "run", stage], cwd=repo, env=env)
    results["native"]["warm"] = timed(["tfgov-ci", "run", "build"], repo, env)
    results["docker build"]["warm"] = timed([*docker, "-t", "bench:warm", "."], repo, denv)
    results["buildah bud"]["warm"] = timed([*bud, "-t", "localhost/bench:warm", "."], repo, env)

    before = storage_bytes(registry)
    sha = run(["git", "rev-parse", "HEAD"], cwd=repo).strip()
    push_layout(layout, sha, built_digest(repo), f"{registry.host}/bench/native", (sha,), {}, env={})
    sizes["native"] = storage_bytes(registry) - before
    before = storage_bytes(registry)
    run(["docker", "tag", "bench:warm", f"{registry.host}/bench/docker:warm"], env=denv)
    run(["docker", "push", "-q", f"{registry.host}/bench/docker:warm"], env=denv)
    sizes["docker build"] = storage_bytes(registry) - before
    before = storage_bytes(registry)
    run(
        [
            *bh,
            "push",
            "-q",
            "--tls-verify=false",
            "localhost/bench:warm",
            f"docker://{registry.host}/bench/buildah:warm",
        ]
    )
    sizes["buildah bud"] = storage_bytes(registry) - before
    return results, sizes


def report(results: dict[str, dict[str, Timing]], sizes: dict[str, int]) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    print(
        f"build benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, TensorFlow example (tensorflow-cpu 2.21.0 + PyYAML)"
    )
    print()
    print("| builder | cold | warm (1 file changed) | peak memory, cold | warm push uploads |")
    print("|---|---|---|---|---|")
    docker_cold = results["docker build"]["cold"].seconds
    for name, timing in results.items():
        memory = "in dockerd" if name == "docker build" else f"{timing['cold'].max_rss_mb:.0f} MB"
        print(
            f"| {name} | {timing['cold'].seconds:.1f} s ({timing['cold'].seconds / docker_cold:.2f}x docker) "
            f"| {timing['warm'].seconds:.1f} s | {memory} | {sizes[name] / 1e3:.1f} kB |"
        )
    native = results["native"]
    print()
    print(
        f"goals: native cold <= 0.6x docker: {native['cold'].seconds / docker_cold:.2f}x; "
        f"native warm < 3 s: {native['warm'].seconds:.1f} s; "
        f"peak memory < 500 MB: {native['cold'].max_rss_mb:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
