"""`inventory report`: the fleet page, opened from a file URL in real headless Chromium (Debian's,
driven by Playwright's Python package; no browser downloaded), with console errors and uncaught
exceptions failing the test, every request it makes counted, and a screenshot taken.

The inventory: the recorded pipeline run, a 2020 variant of it on TensorFlow 2.11 that the
policy denied, a second repository alike to the first (a snowflake), an ungoverned image, a real
`rescan` with a new advisory, and instances stored through the sync's own `instances.store`
(test_instances.py reads them from a real Prometheus)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CliResult, edit_json, require_tools
from tests.integration.test_inventory import fresh_postgres, postgres, variant  # noqa: F401 (fixtures)
from tests.services import PYYAML_ADVISORY, RecordedBuild
from tfgov_ci._cli import main

OLD, ALIKE, UNGOVERNED, UNKNOWN = ("sha256:" + f"{n:064x}" for n in (41, 42, 43, 0xEEE))
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".cache" / "screenshots"


@pytest.fixture(scope="module")
def fleet(recorded_build: RecordedBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tfgov_ci.inventory import instances
    from tfgov_ci.inventory.discovery import Found, ungoverned
    from tfgov_ci.inventory.ingest import save
    from tfgov_ci.inventory.store import open_store

    folder = tmp_path_factory.mktemp("report")
    old = variant(recorded_build, folder, 41, pyyaml="5.3.1")
    edit_json(
        old / "build/result.json",
        lambda d: d["data"]["labels"].update({"io.tfgov.tensorflow.version": "2.11.0"}),
    )  # type: ignore[index]
    edit_json(old / "policy/decision.json", lambda d: d.update(allow=False))
    edit_json(old / "record.json", lambda d: d.update(created="2020-01-02T03:04:05.000Z"))
    edit_json(old / "build/result.json", lambda d: d.update(started="2020-01-02T03:04:05.000Z"))
    alike = variant(recorded_build, folder, 42)
    edit_json(
        alike / "record.json",
        lambda d: d["image"].update(  # type: ignore[attr-defined]
            repository=d["image"]["repository"].replace("ml/recorded", "ml/recorded-copy")
        ),
    )  # type: ignore[index]
    db = folder / "inventory.sqlite"
    assert (
        main(["inventory", "import", str(recorded_build.out), str(old), str(alike), "--inventory", str(db)])
        == 0
    )
    with open_store(str(db)) as store:
        with store.writing() as conn:
            save(conn, ungoverned(Found("registry.example.com", "x/nb", UNGOVERNED, ("1",)), {}, ()))
        with store.writing() as conn:
            now = instances.iso(__import__("time").time())

            def seen(ns: str, pod: str, digest: str) -> instances.Instance:
                return instances.Instance(
                    "prod", ns, pod, "model", f"img/{pod}", digest, digest, now, now, True
                )

            running = (seen("ml-prod", "serve-a", recorded_build.digest),
                       seen("ml-prod", "serve-b", recorded_build.digest),
                       seen("team-x", "notebook", UNGOVERNED), seen("team-x", "rogue", UNKNOWN))  # fmt: skip
            instances.store(conn, instances.Synced("prod", "http://prometheus:9090", now, now, running, ()))
    advisories = folder / "advisories"
    advisories.mkdir()
    (advisories / "PYSEC-2099-9.yaml").write_text(
        PYYAML_ADVISORY.replace("2099-7", "2099-9").replace("MODERATE", "HIGH")
    )
    assert (
        main(["rescan", "--advisories", str(advisories), "--fail-on", "CRITICAL", "--inventory", str(db)])
        == 0
    )
    return db


def test_the_page_holds_every_panel_loads_in_chromium_without_errors_or_requests_and_is_screenshot(
    fleet: Path, recorded_build: RecordedBuild, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    require_tools("chromium")
    from tfgov_ci.testing.browser import load

    page = tmp_path / "fleet.html"
    done = cli("inventory", "report", "--html", str(page), "--days", "30", "--inventory", str(fleet))
    assert done.code == 0, done.err
    assert done.out.startswith(f"wrote {page}: 4 images, 1 stale, 1 snowflake group")
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg") == 5  # five charts, inline
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing to fetch
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "fleet-page.png"
    loaded = load(page, shot)
    assert loaded.errors == ()
    assert loaded.requests == (page.resolve().as_uri(),)  # the page itself, nothing else
    assert loaded.seconds < 2 and shot.stat().st_size > 20_000
    assert loaded.sections == 9
    panels = ("Images per base", "Images per TensorFlow version", "Governed and ungoverned",
              "Findings by severity over time", "Running instances per namespace", "Running, not governed",
              "Stale images (no use for 30 days)", "Snowflakes: near-copies",
              "Newest rescan: new findings")  # fmt: skip
    for panel in panels:
        assert panel in loaded.text, panel
    assert (
        "UNGOVERNED\tprod\tteam-x/notebook/model" in loaded.text
        and "UNKNOWN\tprod\tteam-x/rogue/model" in loaded.text
    )
    assert "PYSEC-2099-9" in loaded.text and "HIGH" in loaded.text  # the rescan's new finding
    # the snowflake group, as its table row reads: group, images, similarity, shared, repositories
    assert re.search(
        r"^1\t2\t[0-9.]+–[0-9.]+\t\d+\t\S+/ml/recorded, \S+/ml/recorded-copy$", loaded.text, re.M
    )


def test_the_json_is_the_pages_data(
    fleet: Path, recorded_build: RecordedBuild, cli: Callable[..., CliResult]
) -> None:
    done = cli("inventory", "report", "--format", "json", "--days", "30", "--inventory", str(fleet))
    assert done.code == 0, done.err
    data = json.loads(done.out)
    assert data["images"] == 4 and data["governed"] == 3 and data["ungoverned"] == 1
    assert data["per_tensorflow"] == {"(not known)": 1, "2.11.0": 1, "2.21.0": 2}
    assert data["instances_per_namespace"] == {
        "prod/ml-prod": {"governed": 2, "ungoverned": 0, "unknown": 0},
        "prod/team-x": {"governed": 0, "ungoverned": 1, "unknown": 1},
    }
    assert [s["digest"] for s in data["stale"]["images"]] == [OLD]
    assert [sorted(m["digest"] for m in g["members"]) for g in data["duplicates"]["groups"]] == [
        sorted([recorded_build.digest, ALIKE])
    ]
    assert [f["advisory"] for f in data["rescan"]["findings"]] == ["PYSEC-2099-9"] * 3
    assert sum(day["MEDIUM"] for day in data["findings_over_time"].values()) == 3


def test_an_empty_inventory_gives_a_valid_page_that_says_so(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    require_tools("chromium")
    from tfgov_ci.testing.browser import load

    page = tmp_path / "empty.html"
    done = cli("inventory", "report", "--html", str(page), "--inventory", str(tmp_path / "empty.sqlite"))
    assert done.code == 0, done.err
    loaded = load(page)
    assert loaded.errors == () and "The inventory is empty" in loaded.text


def test_bad_arguments_exit_2_and_write_nothing(
    fleet: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    nowhere = tmp_path / "missing" / "fleet.html"
    done = cli("inventory", "report", "--html", str(nowhere), "--inventory", str(fleet))
    assert done.code == 2 and "no folder" in done.err and not nowhere.parent.exists()
    neither = cli("inventory", "report", "--inventory", str(fleet))
    assert neither.code == 2 and "give --html FILE" in neither.err
    assert cli("inventory", "report", "--html", str(tmp_path / "x.html"), "--threshold", "2").code == 2
    assert not (tmp_path / "x.html").exists() and not list(tmp_path.glob(".x.html.*"))


def test_the_page_is_made_from_a_postgresql_inventory_and_survives_hostile_names(
    recorded_build: RecordedBuild,
    fresh_postgres: str,  # noqa: F811 (the fixture)
    tmp_path: Path,
    cli: Callable[..., CliResult],
) -> None:
    """The organisation's inventory is PostgreSQL (its GROUP BY is stricter than SQLite's); image
    names and labels are anybody's text: a `$...$` is not mathtext, a tag is not markup."""
    out = variant(recorded_build, tmp_path, 7)
    build = out / "build" / "result.json"

    def hostile(doc: dict[str, Any]) -> None:  # in the base's path, which its chart label keeps
        doc["data"]["base"]["ref"] = doc["data"]["base"]["ref"].replace("/platform/", "/<script>$\\foo$/")

    edit_json(build, hostile)
    assert (
        cli("inventory", "import", str(recorded_build.out), str(out), "--inventory", fresh_postgres).code == 0
    )
    page = tmp_path / "fleet.html"
    done = cli("inventory", "report", "--html", str(page), "--inventory", fresh_postgres)
    assert done.code == 0, done.err
    text = page.read_text()
    assert "<script>$" not in text and "&lt;script&gt;$\\foo$/py-base@" in text
