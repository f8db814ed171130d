"""`inventory stale` and the build facts it reads (`image_builds`), on a real SQLite inventory of
the recorded pipeline run plus variants of it (test_inventory.py's `variant`) built "in 2020":
one unused, one running now, one deployed now, one alone in its repository, one that ran in
2020, and two ungoverned images with no time at all. Instances are stored through the sync's own
`instances.store` (test_instances.py reads them from a real Prometheus)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import CliResult
from tests.integration.test_inventory import variant
from tests.services import RecordedBuild
from tfgov_ci._cli import main

LONG_AGO = "2020-01-02T03:04:05.000Z"


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


UNUSED, RUNNING, DEPLOYED, ALONE, RAN = (digest(n) for n in (2, 5, 6, 7, 8))
NB_OLDER, NB_NEWER = digest(9), digest(10)
OWN_LAYER = digest(0xABC)


def _old(build: RecordedBuild, folder: Path, n: int, repository: str | None = None) -> Path:
    out = variant(build, folder, n)
    record = json.loads((out / "record.json").read_text())
    record["created"] = LONG_AGO
    if repository:
        record["image"]["repository"] = record["image"]["repository"].replace("ml/recorded", repository)
    (out / "record.json").write_text(json.dumps(record))
    result = json.loads((out / "build/result.json").read_text())
    result["started"] = LONG_AGO
    if n == 2:  # a layer only this image holds: what archiving it frees
        result["data"]["layers"][0]["digest"] = OWN_LAYER
    (out / "build/result.json").write_text(json.dumps(result))
    return out


@pytest.fixture(scope="module")
def fleet(recorded_build: RecordedBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tfgov_ci.inventory import instances
    from tfgov_ci.inventory.discovery import Found, ungoverned
    from tfgov_ci.inventory.ingest import save
    from tfgov_ci.inventory.store import open_store

    folder = tmp_path_factory.mktemp("stale")
    db = folder / "inventory.sqlite"
    outs = [_old(recorded_build, folder, n) for n in (2, 5, 6, 8)] + [
        _old(recorded_build, folder, 7, "ml/alone")
    ]
    assert (
        main(["inventory", "import", str(recorded_build.out), *map(str, outs), "--inventory", str(db)]) == 0
    )
    assert main(["inventory", "mark-deployed", DEPLOYED, "production", "--inventory", str(db)]) == 0
    with open_store(str(db)) as store:
        for image in (NB_OLDER, NB_NEWER):
            with store.writing() as conn:
                save(conn, ungoverned(Found("registry.example.com", "x/nb", image, ()), {}, ()))
        with store.writing() as conn:
            # the cluster's newest sync was long ago: what it saw running still counts as running
            now = "2021-01-01T00:00:00.000Z"

            def seen(pod: str, d: str, first: str, last: str, running: bool) -> instances.Instance:
                return instances.Instance("prod", "ml", pod, "model", "img", d, d, first, last, running)

            instances.store(
                conn,
                instances.Synced(
                    "prod", "http://prometheus", now, LONG_AGO,
                    running=(seen("serve", RUNNING, LONG_AGO, now, True),),
                    skipped=(),
                    earlier=(seen("batch", RAN, LONG_AGO, "2020-06-01T07:08:09.000Z", False),),
                ),
            )  # fmt: skip
    return db


def test_the_build_stage_records_its_peak_memory_and_the_inventory_its_duration_and_sizes(
    fleet: Path, recorded_build: RecordedBuild
) -> None:
    result = json.loads((recorded_build.out / "build/result.json").read_text())
    assert result["data"]["peak_memory_bytes"] > 20_000_000  # a Python process building an image
    conn = sqlite3.connect(fleet)
    row = conn.execute(
        "SELECT b.duration_s, b.peak_memory_bytes, b.size_bytes, b.layers FROM image_builds b"
        " JOIN images i ON i.id = b.image_id WHERE i.digest = ?",
        (recorded_build.digest,),
    ).fetchone()
    assert row[0] == result["duration_s"] > 0 and row[1] == result["data"]["peak_memory_bytes"]
    assert row[2] == result["data"]["size"] and len(json.loads(row[3])) == len(result["data"]["layers"])
    # an ungoverned image has no build facts
    assert conn.execute("SELECT count(*) FROM image_builds").fetchone() == (6,)


def _stale(cli: Callable[..., CliResult], db: Path, *args: str) -> dict[str, object]:
    done = cli("inventory", "stale", *args, "--format", "json", "--inventory", str(db))
    assert done.code == 0, done.err
    answer: dict[str, object] = json.loads(done.out)
    return answer


def test_stale_lists_what_nothing_used_and_keeps_the_running_the_deployed_and_the_newest(
    fleet: Path, recorded_build: RecordedBuild, cli: Callable[..., CliResult]
) -> None:
    answer = _stale(cli, fleet, "--days", "30")
    listed = {i["digest"]: i for i in answer["images"]}  # type: ignore[attr-defined]
    assert set(listed) == {UNUSED, RAN, NB_OLDER}
    assert listed[UNUSED]["last_use"] == LONG_AGO and listed[UNUSED]["last_use_kind"] == "built"
    assert listed[RAN]["last_use"] == "2020-06-01T07:08:09.000Z" and listed[RAN]["last_use_kind"] == "running"
    assert listed[NB_OLDER]["last_use"] is None and listed[NB_OLDER]["governed"] is False
    build = json.loads((recorded_build.out / "build/result.json").read_text())["data"]
    assert listed[UNUSED]["size_bytes"] == build["size"] and len(listed[UNUSED]["tags"]) == 3
    # only the layer no kept image holds is freed
    assert answer["freed_bytes"] == build["layers"][0]["size"]
    assert answer["kept_running"] == 1 and answer["kept_newest"] == 2  # ml/alone, x/nb's newer
    # the text: each candidate with its last use and size
    text = cli("inventory", "stale", "--days", "30", "--inventory", str(fleet)).out
    assert text.startswith("3 stale images: not built, deployed or seen running since ")
    assert f"last use {LONG_AGO} (built); " in text and "no use time known" in text
    assert "kept although unused as long: 1 running now, 2 the newest of their repository" in text


def test_a_window_longer_than_the_fleet_is_old_lists_only_images_with_no_time(
    fleet: Path, cli: Callable[..., CliResult]
) -> None:
    answer = _stale(cli, fleet, "--days", "36500")
    assert [i["digest"] for i in answer["images"]] == [NB_OLDER]  # type: ignore[attr-defined]


def test_stale_of_an_empty_inventory_says_none_and_a_bad_window_exits_2(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    db = tmp_path / "empty.sqlite"
    done = cli("inventory", "stale", "--days", "30", "--inventory", str(db))
    assert done.code == 0 and done.out.startswith("0 stale images:")
    bad = cli("inventory", "stale", "--days", "0", "--inventory", str(db))
    assert bad.code == 2 and "--days 0: a number of days, 1 or more" in bad.err
