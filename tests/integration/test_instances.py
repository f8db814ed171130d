"""`inventory sync-prometheus` against a real Prometheus (Debian's, started on 127.0.0.1 with a
throwaway data directory) scraping a small fixture exporter that serves kube-state-metrics'
`kube_pod_container_info` for pods running real inventory digests (the recorded pipeline run and a
variant of it), one ungoverned image, one digest the inventory does not know, and the series a
cluster really shows that name no manifest digest (Docker's local image id, a container still
pulling, a series without its pod label). Only the exporter is a fixture: what kube-state-metrics
would print is the format of its own internal/store/pod.go."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import CliResult, require_tools
from tests.integration import test_inventory
from tests.integration.test_inventory import variant
from tests.services import RecordedBuild
from tfgov_ci._cli import main
from tfgov_ci.testing.prometheus import Exporter, LocalPrometheus, container_info

postgres = test_inventory.postgres  # its fixtures: a PostgreSQL server for this module too
fresh_postgres = test_inventory.fresh_postgres
OLD = "sha256:" + f"{2:064x}"
UNGOVERNED = "sha256:" + f"{4:064x}"
UNKNOWN = "sha256:" + "e" * 64
REGISTRY = "registry.example.com"


def containers(build: RecordedBuild) -> list[dict[str, str]]:
    recorded = f"{REGISTRY}/ml/recorded"
    return [
        # the three ways runtimes report a manifest digest: Docker, containerd/CRI-O, bare
        {"namespace": "ml-prod", "pod": "serve-a", "container": "model", "image": f"{recorded}:main",
         "image_id": f"docker-pullable://{recorded}@{build.digest}"},
        {"namespace": "ml-prod", "pod": "serve-b", "container": "model", "image": f"{recorded}:main",
         "image_id": f"{recorded}@{build.digest}"},
        {"namespace": "ml-staging", "pod": "old-0", "container": "model", "image": f"{recorded}:2020",
         "image_id": OLD},
        {"namespace": "team-x", "pod": "notebook", "container": "jupyter", "image": f"{REGISTRY}/x/nb:1",
         "image_id": f"{REGISTRY}/x/nb@{UNGOVERNED}"},
        {"namespace": "team-x", "pod": "rogue", "container": "app", "image": "docker.io/someone/app:latest",
         "image_id": f"docker.io/someone/app@{UNKNOWN}"},
        # named, skipped, counted
        {"namespace": "kube-system", "pod": "dns", "container": "coredns", "image": "coredns:1.11",
         "image_id": "docker://sha256:" + "c" * 64},
        {"namespace": "ml-prod", "pod": "pulling", "container": "model", "image": f"{recorded}:main",
         "image_id": ""},
        {"namespace": "ml-prod", "container": "sidecar", "image": "envoy:1", "image_id": f"envoy@{UNKNOWN}"},
    ]  # fmt: skip


@dataclass
class Cluster:
    url: str
    exporter: Exporter
    prometheus: LocalPrometheus
    pods: list[dict[str, str]]


@pytest.fixture(scope="module")
def cluster(recorded_build: RecordedBuild) -> Iterator[Cluster]:
    require_tools("prometheus")
    pods = containers(recorded_build)
    with Exporter(lambda: container_info(pods)) as exporter, LocalPrometheus([exporter.target]) as prom:
        prom.wait_for("kube_pod_container_info", count=len(pods))
        time.sleep(3)  # a few scrapes: the range query then has samples before the instant's
        yield Cluster(prom.url, exporter, prom, pods)


@pytest.fixture(scope="module")
def fleet(recorded_build: RecordedBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorded build, a variant of it (OLD) and an ungoverned image, as a registry import
    stores one, in a SQLite inventory."""
    from tfgov_ci.inventory.discovery import Found, ungoverned
    from tfgov_ci.inventory.ingest import save
    from tfgov_ci.inventory.store import open_store

    folder = tmp_path_factory.mktemp("instances")
    db = folder / "inventory.sqlite"
    old = variant(recorded_build, folder, 2)
    assert main(["inventory", "import", str(recorded_build.out), str(old), "--inventory", str(db)]) == 0
    with open_store(str(db)) as store, store.writing() as conn:
        save(conn, ungoverned(Found(REGISTRY, "x/nb", UNGOVERNED, ("1",)), {}, ()))
    return db


def _copy(db: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "inventory.sqlite"
    shutil.copyfile(db, copy)
    return copy


def test_sync_stores_each_running_container_by_digest_and_lists_the_unknown_and_ungoverned_images(
    cluster: Cluster,
    fleet: Path,
    recorded_build: RecordedBuild,
    cli: Callable[..., CliResult],
    tmp_path: Path,
) -> None:
    db = _copy(fleet, tmp_path)
    done = cli("inventory", "sync-prometheus", "--url", cluster.url, "--since", "1m", "--format", "json",
               "--inventory", str(db))  # fmt: skip
    assert done.code == 0, done.err
    answer = json.loads(done.out)
    where = {(i["namespace"], i["pod"]): (i["digest"], i["kind"]) for i in answer["running"]}
    assert where == {
        ("ml-prod", "serve-a"): (recorded_build.digest, "governed"),
        ("ml-prod", "serve-b"): (recorded_build.digest, "governed"),
        ("ml-staging", "old-0"): (OLD, "governed"),
        ("team-x", "notebook"): (UNGOVERNED, "ungoverned"),
        ("team-x", "rogue"): (UNKNOWN, "unknown"),
    }
    assert answer["unknown"] == [UNKNOWN] and answer["ungoverned"] == [UNGOVERNED] and answer["images"] == 4
    assert answer["cluster"] == cluster.url.removeprefix("http://")
    reasons = sorted(s["reason"] for s in answer["skipped"])
    assert len(reasons) == 3
    assert reasons[0].startswith("Docker's local image id (the config's digest)")
    assert reasons[1].startswith("empty image_id") and reasons[2].startswith("no pod label")
    assert "3 kube_pod_container_info series skipped" in done.err
    # first seen is the range query's earliest sample: before the instant query's time
    serve_a = next(i for i in answer["running"] if i["pod"] == "serve-a")
    assert serve_a["first_seen"] < serve_a["last_seen"] == answer["synced"]
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT namespace, pod, container, digest, running FROM instances ORDER BY pod"
    ).fetchall()
    assert len(rows) == 5 and all(r[4] == 1 for r in rows)
    assert conn.execute(
        "SELECT instances, unknown, ungoverned, skipped FROM prometheus_syncs"
    ).fetchall() == [(5, 1, 1, 3)]
    # again: the same five rows, first seen kept
    assert cli("inventory", "sync-prometheus", "--url", cluster.url, "--inventory", str(db)).code == 0
    assert conn.execute("SELECT count(*) FROM instances").fetchone() == (5,)
    first = conn.execute("SELECT first_seen FROM instances WHERE pod = 'serve-a'").fetchone()[0]
    assert first <= serve_a["first_seen"]


def test_fail_on_ungoverned_exits_1_and_the_text_names_each_unknown_and_ungoverned_container(
    cluster: Cluster, fleet: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    db = _copy(fleet, tmp_path)
    done = cli("inventory", "sync-prometheus", "--url", cluster.url, "--cluster", "prod-eu",
               "--fail-on-ungoverned", "--inventory", str(db))  # fmt: skip
    assert done.code == 1, done.err
    lines = done.out.splitlines()
    assert lines[0].startswith("cluster prod-eu (Prometheus http://127.0.0.1:")
    assert lines[0].endswith("5 running containers of 4 images: 2 governed, 1 UNGOVERNED, 1 UNKNOWN")
    assert f"  UNGOVERNED team-x/notebook/jupyter  {REGISTRY}/x/nb:1 ({UNGOVERNED}): no verified" in done.out
    assert (
        f"  UNKNOWN    team-x/rogue/app  docker.io/someone/app:latest ({UNKNOWN}): not in the inventory"
        in (done.out)
    )
    assert "skipped 3 series:" in done.out and 'pod="dns"' in done.out and "Traceback" not in done.err


def test_trace_and_which_show_where_an_image_runs(
    cluster: Cluster,
    fleet: Path,
    recorded_build: RecordedBuild,
    cli: Callable[..., CliResult],
    tmp_path: Path,
) -> None:
    db = _copy(fleet, tmp_path)
    before = cli("trace", OLD, "--inventory", str(db))
    assert "running      not seen (`tfgov-ci inventory sync-prometheus`" in before.out
    assert cli("inventory", "sync-prometheus", "--url", cluster.url, "--cluster", "prod", "--inventory",
               str(db)).code == 0  # fmt: skip
    traced = cli("trace", recorded_build.digest, "--inventory", str(db)).out.splitlines()
    running = [line for line in traced if line.startswith("running ")]
    assert [line.split(" (")[0] for line in running] == [
        "running      prod ml-prod/serve-a/model",
        "running      prod ml-prod/serve-b/model",
    ]
    as_json = json.loads(cli("trace", OLD, "--format", "json", "--inventory", str(db)).out)
    assert [(i["namespace"], i["pod"], i["running"]) for i in as_json["instances"]] == [
        ("ml-staging", "old-0", True)
    ]
    found = json.loads(cli("which", "pyyaml", "--format", "json", "--inventory", str(db)).out)
    by_digest = {m["digest"]: m["running"] for m in found["matches"]}
    assert by_digest[recorded_build.digest] == ["prod/ml-prod/serve-a/model", "prod/ml-prod/serve-b/model"]
    assert by_digest[OLD] == ["prod/ml-staging/old-0/model"]
    text = cli("which", "pyyaml", "--inventory", str(db)).out
    assert "running prod/ml-staging/old-0/model" in text


def test_an_image_imported_after_the_sync_is_linked_to_its_running_instances(
    cluster: Cluster,
    fleet: Path,
    recorded_build: RecordedBuild,
    cli: Callable[..., CliResult],
    tmp_path: Path,
) -> None:
    db = _copy(fleet, tmp_path)
    assert cli("inventory", "sync-prometheus", "--url", cluster.url, "--inventory", str(db)).code == 0
    late = variant(recorded_build, tmp_path, int(UNKNOWN.removeprefix("sha256:"), 16))
    assert cli("inventory", "import", str(late), "--inventory", str(db)).code == 0
    traced = json.loads(cli("trace", UNKNOWN, "--format", "json", "--inventory", str(db)).out)
    assert [(i["namespace"], i["pod"]) for i in traced["instances"]] == [("team-x", "rogue")]


def test_prometheus_unreachable_or_answering_an_error_exits_3_naming_url_and_query_and_stores_nothing(
    cluster: Cluster, fleet: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    from tfgov_ci.testing.registry import free_port

    db = _copy(fleet, tmp_path)
    port = free_port()
    gone = cli("inventory", "sync-prometheus", "--url", f"http://127.0.0.1:{port}", "--inventory", str(db))
    assert gone.code == 3 and gone.out == ""
    assert f"Prometheus http://127.0.0.1:{port}: query 'kube_pod_container_info': cannot connect" in gone.err
    assert "Traceback" not in gone.err
    # not Prometheus at all (the exporter answers its metrics text to every path)
    wrong = cli("inventory", "sync-prometheus", "--url", f"http://{cluster.exporter.target}", "--inventory",
                str(db))  # fmt: skip
    assert wrong.code == 3 and "the answer is not JSON (is this Prometheus' base URL?)" in wrong.err
    # a real Prometheus that refuses the query: at most one sample per query
    with LocalPrometheus([cluster.exporter.target], extra_args=["--query.max-samples=1"]) as strict:
        strict.wait_for_scrape()
        refused = cli("inventory", "sync-prometheus", "--url", strict.url, "--inventory", str(db))
    assert refused.code == 3, refused.err
    assert f"Prometheus {strict.url}: query 'kube_pod_container_info': HTTP 422: execution:" in refused.err
    assert "too many samples" in refused.err
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM instances").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM prometheus_syncs").fetchone() == (0,)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "7days"], "--since '7days' is not a duration"),
        (["--since", "0h"], "--since '0h' is not a duration"),
        (["--cluster", "no spaces"], "'no spaces' is not a cluster name"),
    ],
)
def test_a_malformed_option_exits_2(
    cluster: Cluster, args: list[str], says: str, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    done = cli(
        "inventory", "sync-prometheus", "--url", cluster.url, *args, "--inventory", str(tmp_path / "i")
    )
    assert done.code == 2 and says in done.err, done.err


@pytest.mark.parametrize("url", ["prometheus:9090", "http://prometheus:abc", "http://[::1", "http://:9090"])
def test_a_url_that_is_not_http_exits_2(url: str, cli: Callable[..., CliResult], tmp_path: Path) -> None:
    done = cli("inventory", "sync-prometheus", "--url", url, "--inventory", str(tmp_path / "i"))
    assert done.code == 2 and "is not a Prometheus URL" in done.err and "Traceback" not in done.err


def test_a_prometheus_without_kube_state_metrics_is_an_error_and_marks_nothing_stopped(
    cluster: Cluster, fleet: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """No series at all is no exporter, not an empty cluster: the instances stay as they were."""
    db = _copy(fleet, tmp_path)
    first = cli(
        "inventory", "sync-prometheus", "--url", cluster.url, "--cluster", "prod", "--inventory", str(db)
    )
    assert first.code == 0, first.err
    before = sqlite3.connect(db).execute("SELECT count(*) FROM instances WHERE running").fetchone()
    assert before[0] > 0
    with LocalPrometheus([]) as empty:
        done = cli("inventory", "sync-prometheus", "--url", empty.url, "--cluster", "prod",
                   "--inventory", str(db))  # fmt: skip
    assert done.code == 3 and "no series at all" in done.err and "kube-state-metrics" in done.err
    assert sqlite3.connect(db).execute("SELECT count(*) FROM instances WHERE running").fetchone() == before


def test_sync_into_postgres_keeps_first_seen_and_moves_last_seen(
    cluster: Cluster,
    fleet: Path,
    fresh_postgres: str,
    recorded_build: RecordedBuild,
    cli: Callable[..., CliResult],
) -> None:
    assert cli("inventory", "import", str(recorded_build.out), "--inventory", fresh_postgres).code == 0
    first = json.loads(cli("inventory", "sync-prometheus", "--url", cluster.url, "--format", "json",
                           "--inventory", fresh_postgres).out)  # fmt: skip
    time.sleep(1.1)
    second = json.loads(cli("inventory", "sync-prometheus", "--url", cluster.url, "--format", "json",
                            "--inventory", fresh_postgres).out)  # fmt: skip
    from sqlalchemy import create_engine

    engine = create_engine(fresh_postgres.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT first_seen, last_seen, running FROM instances WHERE pod = 'serve-a'"
        ).fetchall()
    engine.dispose()
    assert len(rows) == 1 and rows[0][2] is True
    assert (
        rows[0][0] <= first["running"][0]["first_seen"] and rows[0][1] == second["synced"] > first["synced"]
    )
    assert second["unknown"] == sorted([OLD, UNGOVERNED, UNKNOWN])  # only the recorded build imported


def test_a_container_that_stops_is_kept_with_its_last_seen_and_marked_as_no_longer_running(
    cluster: Cluster,
    fleet: Path,
    cli: Callable[..., CliResult],
    tmp_path: Path,
    recorded_build: RecordedBuild,
) -> None:
    db = _copy(fleet, tmp_path)
    assert cli("inventory", "sync-prometheus", "--url", cluster.url, "--inventory", str(db)).code == 0
    rogue = next(p for p in cluster.pods if p.get("pod") == "rogue")
    cluster.pods.remove(rogue)
    try:
        _wait_gone(cluster, "rogue")
        done = cli("inventory", "sync-prometheus", "--url", cluster.url, "--since", "1m", "--format", "json",
                   "--inventory", str(db))  # fmt: skip
        assert done.code == 0, done.err
        answer = json.loads(done.out)
        assert answer["stopped"] == 1 and answer["unknown"] == []
        assert [i["pod"] for i in answer["ran_earlier"]] == ["rogue"]
        row = (
            sqlite3.connect(db)
            .execute("SELECT running, last_seen FROM instances WHERE pod = 'rogue'")
            .fetchone()
        )
        assert row[0] == 0 and row[1] < answer["synced"]
        # once its image is recorded, trace shows where it ran, and that it runs no more
        late = variant(recorded_build, tmp_path, int(UNKNOWN.removeprefix("sha256:"), 16))
        assert cli("inventory", "import", str(late), "--inventory", str(db)).code == 0
        traced = cli("trace", UNKNOWN, "--inventory", str(db)).out.splitlines()
        (where,) = (line for line in traced if line.startswith(("running ", "ran ")))
        assert (
            where.startswith("ran          ") and "team-x/rogue/" in where and f"last seen {row[1]}" in where
        )
    finally:
        cluster.pods.append(rogue)


def test_a_completed_jobs_container_ran_and_does_not_run(
    cluster: Cluster,
    fleet: Path,
    recorded_build: RecordedBuild,
    cli: Callable[..., CliResult],
    tmp_path: Path,
) -> None:
    """kube-state-metrics keeps a completed Job pod's info series until the pod is deleted; its
    container's status_terminated is 1."""
    db = _copy(fleet, tmp_path)
    recorded = f"{REGISTRY}/ml/recorded"
    job = {"namespace": "ml-prod", "pod": "train-28731", "container": "train", "terminated": "Completed",
           "image": f"{recorded}:main", "image_id": f"{recorded}@{recorded_build.digest}"}  # fmt: skip
    cluster.pods.append(job)
    try:
        cluster.prometheus.wait_for('kube_pod_container_status_terminated{pod="train-28731"} == 1')
        done = cli("inventory", "sync-prometheus", "--url", cluster.url, "--format", "json", "--inventory",
                   str(db))  # fmt: skip
        assert done.code == 0, done.err
        answer = json.loads(done.out)
        assert "train-28731" not in {i["pod"] for i in answer["running"]}
        assert "serve-a" in {i["pod"] for i in answer["running"]}  # its neighbours still run
        assert [i["pod"] for i in answer["ran_earlier"]] == ["train-28731"]
        row = (
            sqlite3.connect(db).execute("SELECT running FROM instances WHERE pod = 'train-28731'").fetchone()
        )
        assert row == (0,)
    finally:
        cluster.pods.remove(job)
        _wait_gone(cluster, "train-28731")


def _wait_gone(cluster: Cluster, pod: str) -> None:
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"query": f'kube_pod_container_info{{pod="{pod}"}}'})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{cluster.url}/api/v1/query?{query}", timeout=5) as response:
            if not json.loads(response.read())["data"]["result"]:
                return
        time.sleep(0.5)
    raise AssertionError(f"{pod} still reported after 30 s")
