"""Fleet rules on plain rows: which image is the newest of its repository (stale and duplicates
keep it), what a group of near-copies with nothing common to all of them is told, and the fleet
page's chart labels."""

from __future__ import annotations

from tfgov_ci.inventory.duplicates import Group, Member
from tfgov_ci.inventory.tables import newest_first

BUILT_2020 = {"id": 1, "created": "2020-01-02T03:04:05.000Z", "recorded": "2026-11-01T00:00:00.000Z"}
IMPORTED_NOW = {"id": 2, "created": None, "recorded": "2026-12-01T00:00:00.000Z"}
IMPORTED_2019 = {"id": 3, "created": None, "recorded": "2019-06-01T00:00:00.000Z"}


def test_an_image_without_a_created_time_is_as_new_as_its_import() -> None:
    newest = max((BUILT_2020, IMPORTED_NOW), key=newest_first)
    assert newest is IMPORTED_NOW  # not older than every built image for having no label
    assert max((BUILT_2020, IMPORTED_2019), key=newest_first) is BUILT_2020


def test_a_group_with_no_package_common_to_all_is_told_to_split_not_given_an_empty_base() -> None:
    members = (Member("sha256:a", "a", 2, ("x==1",)), Member("sha256:b", "b", 2, ("y==1",)))
    assert Group(members, (), 0.5, 0.5).suggestion.startswith("no package common to every member")
    assert Group(members, ("z==1",), 0.5, 0.5).suggestion.startswith("a team base with the 1 shared")


def test_a_chart_label_is_the_short_form_unless_two_texts_share_it() -> None:
    from tfgov_ci.inventory.report import _labels

    base = "127.0.0.1:40241/platform/tf-base@sha256:" + "1a" * 32
    assert _labels([base, "(not known)"]) == ["platform/tf-base@1a1a1a1a1a1a", "(not known)"]
    other = "registry.example.com/platform/tf-base@sha256:" + "1a" * 32  # the same short form
    assert _labels([base, other]) == ["…" + base[-47:], "…" + other[-47:] + " (2)"]  # two bars still
