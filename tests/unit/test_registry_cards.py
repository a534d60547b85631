"""Model cards: Mitchell et al. sections, Markdown rendering, completeness for rollout gates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lakecast.errors import RegistryError
from lakecast.registry.cards import (
    REQUIRED_SECTIONS,
    SECTION_TITLES,
    ModelCard,
    card_is_complete,
    render_card,
)
from lakecast.registry.records import Lineage, ModelVersion
from lakecast.registry.signature import Signature

FULL = ModelCard(**{name: f"text of {name}" for name in SECTION_TITLES})


def _version(card: ModelCard) -> ModelVersion:
    return ModelVersion(
        name="ctr",
        version="1.2.0",
        flavor="sklearn",
        signature=Signature.of(["price", "views"]),
        metrics={"auc": 0.7123, "log_loss": 0.41},
        lineage=Lineage(training_table="/lake/train", training_table_version=7, git_commit="abc"),
        card=card,
        nan_policy="error",
        sha256="f" * 64,
        artifact_path="/x/model.skops",
        created_at=datetime(2025, 1, 2, tzinfo=UTC),
        created_by="ana",
    )


def test_full_card_is_complete_and_renders_every_section() -> None:
    assert card_is_complete(FULL)
    text = render_card(_version(FULL))
    for name, title in SECTION_TITLES.items():
        assert f"## {title}" in text
        assert f"text of {name}" in text
    assert "| price | float32 |" in text
    assert "Delta version 7" in text
    assert "Incomplete card" not in text


def test_blank_required_section_makes_the_card_incomplete() -> None:
    card = ModelCard(**{n: "x" for n in REQUIRED_SECTIONS if n != "factors"})
    assert not card_is_complete(card)
    assert card.missing_sections() == ["factors"]
    assert "Incomplete card: missing factors" in render_card(_version(card))


def test_blank_quantitative_analyses_is_filled_from_metrics() -> None:
    text = render_card(_version(ModelCard()))
    assert "| auc | 0.7123 |" in text


def test_json_round_trip_and_unknown_sections_refused() -> None:
    assert ModelCard.from_json(FULL.to_json()) == FULL
    with pytest.raises(RegistryError, match="unknown sections"):
        ModelCard.from_dict({"limitations": "x"})
