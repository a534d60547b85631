"""Model references: NAME, NAME:VERSION, NAME@ALIAS."""

from __future__ import annotations

import pytest

from lakecast.errors import RegistryError
from lakecast.registry.references import ModelReference, parse_reference


def test_parses_the_three_forms() -> None:
    assert parse_reference("ctr") == ModelReference("ctr")
    assert parse_reference("ctr:1.2.0") == ModelReference("ctr", version="1.2.0")
    assert parse_reference("ctr@champion") == ModelReference("ctr", alias="champion")
    assert str(parse_reference("ctr@champion")) == "ctr@champion"


@pytest.mark.parametrize("bad", ["", "ctr:1.2", "ctr@", "c tr", "ctr:1.0.0@champion", "@x"])
def test_refuses_malformed_references(bad: str) -> None:
    with pytest.raises(RegistryError):
        parse_reference(bad)
