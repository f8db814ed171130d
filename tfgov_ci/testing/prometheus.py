"""A real Prometheus (Debian's ``prometheus``) on 127.0.0.1 scraping a small exporter, for tests,
benchmarks and demos of the fleet commands.

:class:`Exporter` serves Prometheus' text exposition format at ``/metrics`` from a function called
on every scrape (so counters can grow and pods can come and go); it stands in for
kube-state-metrics and cAdvisor, whose output it imitates (:func:`container_info` writes
kube-state-metrics' own series). :class:`LocalPrometheus` starts the real server with a throwaway
data directory and a static scrape config pointing at it, every second, and stops it by its PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from tfgov_ci.errors import ToolError
from tfgov_ci.testing.registry import free_port


def _labels(labels: Mapping[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())


def series(name: str, labels: Mapping[str, str], value: float) -> str:
    """One sample line of the text format."""
    return f"{name}{{{_labels(labels)}}} {value:g}"


def container_info(containers: Iterable[Mapping[str, str]]) -> str:
    """kube-state-metrics' ``kube_pod_container_info`` family for these containers (each with
    namespace, pod, container, image, image_id; uid and container_id are made up when absent),
    with its HELP and TYPE lines, as internal/store/pod.go writes it; and each one's
    ``kube_pod_container_status_terminated`` (1 for a container given ``terminated``)."""
    containers = list(containers)
    lines = [
        "# HELP kube_pod_container_info [STABLE] Information about a container in a pod.",
        "# TYPE kube_pod_container_info gauge",
    ]
    for c in containers:
        labels = {
            "namespace": c.get("namespace", ""),
            "pod": c.get("pod", ""),
            "uid": c.get("uid", f"uid-{c.get('pod', '')}"),
            "container": c.get("container", ""),
            "image_spec": c.get("image_spec", c.get("image", "")),
            "image": c.get("image", ""),
            "image_id": c.get("image_id", ""),
            "container_id": c.get("container_id", f"containerd://{abs(hash(c.get('pod', ''))):x}"),
        }
        labels.update({k: v for k, v in c.items() if k not in labels and k != "terminated"})
        lines.append(series("kube_pod_container_info", {k: v for k, v in labels.items() if k in c or v}, 1))
    lines.append("# TYPE kube_pod_container_status_terminated gauge")
    for c in containers:
        own = {k: c[k] for k in ("namespace", "pod", "container") if k in c}
        lines.append(series("kube_pod_container_status_terminated", own, 1 if c.get("terminated") else 0))
    return "\n".join(lines) + "\n"


def cadvisor(containers: Iterable[Mapping[str, str]], scrape: int, *, cores: float = 0.25,
             memory: int = 300 * 1024 * 1024) -> str:  # fmt: skip
    """cAdvisor's CPU counter and working set for these containers at the ``scrape``-th scrape (a
    second apart: the counter grows by ``cores`` each; the working set wobbles around ``memory``)."""
    lines = [
        "# TYPE container_cpu_usage_seconds_total counter",
        "# TYPE container_memory_working_set_bytes gauge",
    ]
    for c in containers:
        labels = {k: c[k] for k in ("namespace", "pod", "container") if k in c}
        lines.append(series("container_cpu_usage_seconds_total", {**labels, "cpu": "total"}, scrape * cores))
        lines.append(
            series("container_memory_working_set_bytes", labels, memory + (scrape % 5) * 1024 * 1024)
        )
    return "\n".join(lines) + "\n"


def dcgm(containers: Iterable[Mapping[str, str]], gpu_mib: int) -> str:
    """DCGM exporter's ``DCGM_FI_DEV_FB_USED`` (GPU memory used, MiB) for the GPU of each of these
    containers, with the pod it is assigned to as DCGM's Kubernetes mode labels it."""
    lines = ["# TYPE DCGM_FI_DEV_FB_USED gauge"]
    for n, c in enumerate(containers):
        labels = {k: c[k] for k in ("namespace", "pod", "container") if k in c}
        lines.append(
            series("DCGM_FI_DEV_FB_USED", {"gpu": str(n), "modelName": "NVIDIA A100", **labels}, gpu_mib)
        )
    return "\n".join(lines) + "\n"


class Exporter:
    """``with Exporter(lambda: text) as e: e.target`` -> "127.0.0.1:PORT" serving it at /metrics."""

    def __init__(self, text: Callable[[], str]) -> None:
        self.text = text
        self.port = free_port()
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text().encode()
                exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # as Go's promhttp handler: the metrics to any method

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Exporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class LocalPrometheus:
    """``with LocalPrometheus([exporter.target]) as prom: prom.url`` -> "http://127.0.0.1:PORT".

    ``pod_targets`` are scraped as Kubernetes service discovery scrapes an exporter's pod: without
    ``honor_labels``, with the pod's own ``namespace`` and ``pod`` as target labels (the exporter's
    clashing labels are then kept as ``exported_*``)."""

    def __init__(
        self, targets: list[str], *, scrape_interval: str = "1s", extra_args: list[str] | None = None,
        pod_targets: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:  # fmt: skip
        self.targets = targets
        self.pod_targets = dict(pod_targets or {})
        self.extra_args = list(extra_args or [])
        self.scrape_interval = scrape_interval
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalPrometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            raise ToolError("prometheus is not installed", "apt-get install -y prometheus")
        self._tmp = tempfile.TemporaryDirectory(prefix="tfgov-prometheus.")
        base = Path(self._tmp.name)
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {"job_name": "fixture", "honor_labels": True, "static_configs": [{"targets": self.targets}]},
                *(
                    {
                        "job_name": f"pod-{n}",
                        "static_configs": [{"targets": [target], "labels": dict(labels)}],
                    }
                    for n, (target, labels) in enumerate(self.pod_targets.items())
                ),
            ],
        }
        (base / "prometheus.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
        log = (base / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={base / 'prometheus.yml'}",
                f"--storage.tsdb.path={base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ToolError(f"prometheus exited with {self.process.returncode}: {self.log()[-1500:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise ToolError(f"prometheus did not become ready in {timeout:.0f} s: {self.log()[-1500:]}")

    def log(self) -> str:
        if self._tmp is None:
            return ""
        path = Path(self._tmp.name) / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, promql: str, count: int = 1, timeout: float = 60) -> None:
        """Until ``promql`` answers at least ``count`` series (the scrapes have landed)."""
        deadline = time.monotonic() + timeout
        query = urllib.parse.urlencode({"query": promql})
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=5) as response:
                    if len(json.loads(response.read())["data"]["result"]) >= count:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise ToolError(f"prometheus: {promql!r} had no {count} series after {timeout:.0f} s")

    def wait_for_scrape(self, timeout: float = 60) -> None:
        """Until the first scrape of every target has landed."""
        self.wait_for("up", count=len(self.targets), timeout=timeout)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalPrometheus:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
