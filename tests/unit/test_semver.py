"""Semantic versions: parsing, ordering, bumps and the rule that ties a bump to a change."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakecast.errors import RegistryError
from lakecast.registry.semver import SemVer, bump_between, is_enough

versions = st.builds(SemVer, st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
kinds = st.sampled_from(["major", "minor", "patch"])


def test_parse_and_print_round_trip() -> None:
    assert str(SemVer.parse("1.20.3")) == "1.20.3"
    assert SemVer.parse(" 0.0.1 ") == SemVer(0, 0, 1)


@pytest.mark.parametrize("bad", ["1.2", "v1.2.3", "01.2.3", "1.2.3.4", "1.2.x", "", "1.2.3-rc1"])
def test_parse_refuses_what_is_not_major_minor_patch(bad: str) -> None:
    with pytest.raises(RegistryError, match=r"MAJOR\.MINOR\.PATCH"):
        SemVer.parse(bad)


def test_order_is_numeric_not_lexical() -> None:
    assert SemVer.parse("1.10.0") > SemVer.parse("1.9.0")
    assert SemVer.parse("2.0.0") > SemVer.parse("1.99.99")


def test_bumps_reset_lower_parts() -> None:
    v = SemVer.parse("1.4.7")
    assert str(v.bump("major")) == "2.0.0"
    assert str(v.bump("minor")) == "1.5.0"
    assert str(v.bump("patch")) == "1.4.8"


@given(versions, kinds)
def test_bump_between_recovers_the_bump_kind(version: SemVer, kind: str) -> None:
    bumped = version.bump(kind)  # type: ignore[arg-type]
    assert bumped > version
    assert bump_between(version, bumped) == kind


def test_bump_between_refuses_a_version_that_is_not_above() -> None:
    with pytest.raises(RegistryError, match="not above"):
        bump_between(SemVer(1, 2, 0), SemVer(1, 1, 9))


def test_a_bigger_bump_covers_a_smaller_change_never_the_reverse() -> None:
    assert is_enough("major", "minor")
    assert is_enough("minor", "minor")
    assert not is_enough("patch", "minor")
    assert not is_enough("minor", "major")
