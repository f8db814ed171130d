"""`inventory forecast` from a repository's build history (the recorded pipeline run and variants
of it whose build results say other durations, peaks and sizes) and from a real Prometheus
(Debian's, on 127.0.0.1) scraping a fixture exporter of kube-state-metrics' and cAdvisor's series
for the repository's running containers, and DCGM's GPU memory for one pod from a second exporter
scraped as a cluster scrapes DCGM's pod (without honor_labels: its labels kept as exported_*)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import CliResult, require_tools
from tests.integration.test_inventory import variant
from tests.services import RecordedBuild
from tfgov_ci._cli import main
from tfgov_ci.testing.prometheus import Exporter, LocalPrometheus, cadvisor, container_info, dcgm

GIB = 1024**3
MIB = 1024**2
# the variants' build costs: duration (s), peak memory, image size
COSTS = {31: (100.0, 1 * GIB, 400 * MIB), 32: (200.0, 1.5 * GIB, 420 * MIB), 33: (300.0, 2 * GIB, 440 * MIB),
         34: (400.0, 2.5 * GIB, 460 * MIB)}  # fmt: skip


def _costly(build: RecordedBuild, folder: Path, n: int, repository: str) -> Path:
    out = variant(build, folder, n)
    duration, memory, size = COSTS[n]
    result = json.loads((out / "build/result.json").read_text())
    result["duration_s"] = duration
    result["started"] = f"2026-0{n - 30}-01T00:00:00.000Z"
    result["data"].update(peak_memory_bytes=int(memory), size=int(size))
    (out / "build/result.json").write_text(json.dumps(result))
    record = json.loads((out / "record.json").read_text())
    record["image"]["repository"] = record["image"]["repository"].replace("ml/recorded", repository)
    (out / "record.json").write_text(json.dumps(record))
    return out


@pytest.fixture(scope="module")
def fleet(recorded_build: RecordedBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("forecast")
    outs = [_costly(recorded_build, folder, n, "ml/fraud") for n in (31, 32, 33, 34)]
    db = folder / "inventory.sqlite"
    assert (
        main(["inventory", "import", *map(str, outs), str(recorded_build.out), "--inventory", str(db)]) == 0
    )
    return db


PODS = [
    {"namespace": "ml", "pod": "fraud-0", "container": "model", "image": "r/ml/fraud:main",
     "image_id": "r/ml/fraud@sha256:" + f"{34:064x}"},
    {"namespace": "ml", "pod": "fraud-1", "container": "model", "image": "r/ml/fraud:main",
     "image_id": "r/ml/fraud@sha256:" + f"{34:064x}"},
    {"namespace": "other", "pod": "noise", "container": "app", "image": "x:1",
     "image_id": "x@sha256:" + "9" * 64},
]  # fmt: skip


@pytest.fixture(scope="module")
def prometheus() -> Iterator[str]:
    require_tools("prometheus")
    scrape = iter(range(1, 10**6))

    def text() -> str:
        n = next(scrape)
        return (
            container_info(PODS) + cadvisor(PODS[:2], n) + cadvisor(PODS[2:], n, cores=4, memory=8 * GIB)
        )  # the noise pod is not the repository's: it must not count

    dcgm_pod = {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-7xk2p"}
    with (
        Exporter(text) as exporter,
        Exporter(lambda: dcgm(PODS[:1], 2048)) as gpus,
        LocalPrometheus([exporter.target], pod_targets={gpus.target: dcgm_pod}) as prom,
    ):
        prom.wait_for("container_cpu_usage_seconds_total", count=3)
        prom.wait_for('DCGM_FI_DEV_FB_USED{exported_pod="fraud-0"}')
        time.sleep(4)  # a few scrapes: the rate has points
        yield prom.url


def _forecast(cli: Callable[..., CliResult], db: Path, *args: str) -> dict[str, object]:
    done = cli("inventory", "forecast", *args, "--format", "json", "--inventory", str(db))
    assert done.code == 0, done.err
    answer: dict[str, object] = json.loads(done.out)
    return answer


def test_the_next_build_is_forecast_as_p95_plus_headroom_of_the_history(
    fleet: Path, cli: Callable[..., CliResult]
) -> None:
    answer = _forecast(cli, fleet, "ml/fraud")
    assert answer["repository"].endswith("/ml/fraud") and answer["builds"] == 4  # type: ignore[attr-defined]
    build = {e["measure"]: e for e in answer["build"]}  # type: ignore[attr-defined]
    # p95 of 1, 1.5, 2, 2.5 GiB (linear): 2 + 0.85 * 0.5 = 2.425 GiB; request +20 %; limit: peak +20 %
    memory = build["peak memory"]
    assert memory["p95"] == pytest.approx(2.425 * GIB) and memory["request"] == pytest.approx(2.91 * GIB)
    assert memory["limit"] == pytest.approx(3.0 * GIB)
    assert build["duration"]["p95"] == pytest.approx(385.0) and build["duration"]["limit"] is None
    assert build["image size"]["peak"] == 460 * MIB
    assert answer["build_resources"] == (
        f"resources:\n  requests:\n    memory: {math.ceil(2.91 * 1024)}Mi\n  limits:\n    memory: 3072Mi"
    )
    text = cli("inventory", "forecast", "ml/fraud", "--inventory", str(fleet)).out
    assert "request = p95 + 20%, memory limit = the peak + 20% (at least the request)" in text
    assert (
        "  peak memory            4 samples  p95  2484 MiB  peak  2560 MiB  -> request 2980 MiB, "
        "limit 3072 MiB" in text
    )


def test_one_build_is_too_little_history_and_the_forecast_says_what_it_assumed(
    fleet: Path, cli: Callable[..., CliResult]
) -> None:
    answer = _forecast(cli, fleet, "ml/recorded")
    assert answer["builds"] == 1
    memory = next(e for e in answer["build"] if e["measure"] == "peak memory")  # type: ignore[attr-defined]
    assert memory["p95"] is None and memory["request"] == pytest.approx(memory["peak"] * 1.4)
    assert memory["assumed"] == "only 1 sample (a percentile needs 3): the largest seen plus 40%"
    text = cli("inventory", "forecast", "ml/recorded", "--inventory", str(fleet)).out
    assert "too little history: only 1 sample" in text


def test_running_containers_give_cpu_memory_and_gpu_requests_from_prometheus(
    fleet: Path, prometheus: str, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    import shutil

    db = tmp_path / "inventory.sqlite"
    shutil.copyfile(fleet, db)
    assert (
        cli("inventory", "sync-prometheus", "--url", prometheus, "--since", "1m", "--inventory", str(db)).code
        == 0
    )
    answer = _forecast(cli, db, "ml/fraud", "--prometheus", prometheus, "--window", "1m")
    assert answer["containers"] == ["ml/fraud-0/model", "ml/fraud-1/model"]
    running = {e["measure"]: e for e in answer["running"]}  # type: ignore[attr-defined]
    assert running["cpu"]["p95"] == pytest.approx(0.25, rel=0.15)  # 0.25 cores each, not the noise's 4
    assert running["cpu"]["limit"] is None
    assert 300 * MIB <= running["memory"]["peak"] <= 305 * MIB  # not the noise pod's 8 GiB
    assert running["gpu memory"]["peak"] == 2048 * MIB  # fraud-0's, not DCGM's own pod's
    assert (
        "DCGM_FI_DEV_FB_USED: read by its exported_namespace and exported_pod labels (its exporter is "
        "scraped without honor_labels)" in answer["notes"]  # type: ignore[operator]
    )
    resources = answer["resources"]
    assert "requests:\n    cpu: " in resources and "limits:\n    memory: " in resources  # type: ignore[operator]
    assert resources.endswith("nvidia.com/gpu: 1")  # type: ignore[union-attr]


def test_prometheus_unreachable_exits_3_and_an_unknown_repository_exits_1(
    fleet: Path, prometheus: str, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    import shutil

    from tfgov_ci.testing.registry import free_port

    # no instances stored: nothing to ask Prometheus, and the forecast says so
    answer = _forecast(cli, fleet, "ml/fraud", "--prometheus", prometheus)
    assert any("run `tfgov-ci inventory sync-prometheus` first" in n for n in answer["notes"])  # type: ignore[attr-defined]
    db = tmp_path / "inventory.sqlite"
    shutil.copyfile(fleet, db)
    assert cli("inventory", "sync-prometheus", "--url", prometheus, "--inventory", str(db)).code == 0
    port = free_port()
    gone = cli(
        "inventory",
        "forecast",
        "ml/fraud",
        "--prometheus",
        f"http://127.0.0.1:{port}",
        "--inventory",
        str(db),
    )
    assert (
        gone.code == 3
        and f"Prometheus http://127.0.0.1:{port}: query 'max_over_time(irate(container_cpu_usage" in gone.err
    )
    unknown = cli("inventory", "forecast", "ml/nothing", "--inventory", str(fleet))
    assert unknown.code == 1 and "no images of ml/nothing in the inventory" in unknown.err
    bad = cli("inventory", "forecast", "ml/fraud", "--window", "a week", "--inventory", str(fleet))
    assert bad.code == 2 and "--window 'a week' is not a duration" in bad.err
