"""Which inventory the record stage writes into, as `tfgov-ci plan` shows it (no database needed:
the plan touches nothing), and the inventory URL rules (masked everywhere, supported drivers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import CliResult, git
from tfgov_ci.errors import UsageError
from tfgov_ci.inventory import location

SECRET = "do-not-print-me"


def _with_record_option(repo: Path, value: str) -> None:
    config = repo / "tfgov.yaml"
    config.write_text(config.read_text() + f"\nstages:\n  record:\n    options: {{inventory: {value}}}\n")
    git(repo, "commit", "-qam", "record into an inventory")


def test_without_an_inventory_the_record_stage_plans_no_recording(
    example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    plan = cli("plan", "record", cwd=example_repo)
    assert plan.code == 0, plan.err
    assert "inventory" not in plan.out


def test_option_default_records_into_the_per_user_sqlite_file(
    example_repo: Path, tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    _with_record_option(example_repo, "default")
    plan = cli("plan", "record", cwd=example_repo)
    assert plan.code == 0, plan.err
    expected = f"record the build in the inventory sqlite:///{tmp_path}/data/tfgov-ci/inventory.sqlite"
    assert expected in plan.out
    assert not (tmp_path / "data").exists()  # a plan touches nothing


def test_the_variable_wins_over_the_option_and_false_turns_recording_off(
    example_repo: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFGOV_INVENTORY_URL", f"postgresql://ci:{SECRET}@db.example.com/fleet")
    plan = cli("plan", "record", cwd=example_repo)
    assert "record the build in the inventory postgresql://***@db.example.com/fleet" in plan.out
    assert SECRET not in plan.out + plan.err
    _with_record_option(example_repo, "false")
    assert "inventory" not in cli("plan", "record", cwd=example_repo).out


def test_a_password_in_tfgov_yaml_is_refused_naming_the_key_without_printing_it(
    example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    _with_record_option(example_repo, f"'postgresql://ci:{SECRET}@db.example.com/fleet'")
    plan = cli("plan", "record", cwd=example_repo)
    assert plan.code == 2
    assert (
        "tfgov.yaml: stages.record.options.inventory: postgresql://***@db.example.com/fleet holds a password"
        in plan.err
    )
    assert "(hint: put the URL in $TFGOV_INVENTORY_URL" in plan.err and SECRET not in plan.err


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@h:5433/db", "postgresql+psycopg"),
        ("sqlite:////tmp/x.sqlite", "sqlite"),
        ("/tmp/x.sqlite", "sqlite"),
    ],
)
def test_supported_urls_and_a_plain_path_name_their_driver(given: str, driver: str) -> None:
    assert location.parse(given).drivername == driver


@pytest.mark.parametrize(
    "given",
    [
        f"mysql://u:{SECRET}@h/db",
        "sqlite://",
        f"postgresql+psycopg2://u:{SECRET}@h/db",
        f"postgresql://u:{SECRET}@h:notaport/db",
    ],
)
def test_unsupported_urls_are_usage_errors_that_mask_the_password(given: str) -> None:
    with pytest.raises(UsageError) as caught:
        location.parse(given)
    assert SECRET not in caught.value.message and "sqlite:///PATH or postgresql://" in str(caught.value.hint)


def test_masking_hides_credentials_even_when_the_password_holds_url_characters() -> None:
    assert location.masked(f"postgresql://u:{SECRET}@h/db") == "postgresql://***@h/db"
    assert SECRET not in location.masked(f"postgresql://u:{SECRET}%40x@h/db")
    assert location.masked("sqlite:////tmp/inventory.sqlite") == "sqlite:////tmp/inventory.sqlite"
    assert location.masked(f"postgresql://u:{SECRET}@t@h/db") == "postgresql://***@h/db"  # all of it


def test_a_password_in_the_query_string_is_masked_and_refused_in_tfgov_yaml(
    example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    """libpq takes ?password= and ?sslpassword= too: never shown, never in tfgov.yaml."""
    url = f"postgresql://ci@db.example.com/fleet?sslmode=require&password={SECRET}"
    assert location.masked(url) == "postgresql://***@db.example.com/fleet?sslmode=require&password=***"
    assert SECRET not in location.masked(f"postgresql://ci@h/db?sslpassword={SECRET}")
    _with_record_option(example_repo, f"'{url}'")
    plan = cli("plan", "record", cwd=example_repo)
    assert plan.code == 2 and "holds a password" in plan.err and SECRET not in plan.err + plan.out


def test_rescan_offers_the_findings_schemas_severities() -> None:
    from tfgov_ci import findings
    from tfgov_ci.commands import rescan

    assert rescan.SEVERITIES == findings.SEVERITIES
