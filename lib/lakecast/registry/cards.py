"""Model cards (Mitchell et al., 2019): the sections, Markdown rendering, completeness.

A card is stored with each version as JSON. ``card_is_complete`` is what rollout gates ask
before a version may take traffic: every required section must say something.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import orjson

from lakecast.errors import RegistryError

if TYPE_CHECKING:
    from lakecast.registry.records import ModelVersion

SECTION_TITLES = {
    "model_details": "Model details",
    "intended_use": "Intended use",
    "factors": "Factors",
    "metrics": "Metrics",
    "evaluation_data": "Evaluation data",
    "training_data": "Training data",
    "quantitative_analyses": "Quantitative analyses",
    "ethical_considerations": "Ethical considerations",
    "caveats_and_recommendations": "Caveats and recommendations",
    "optimization": "Optimization and parity",
}
# Quantitative analyses are filled from the recorded metrics when left blank; ethical
# considerations are asked for but a blank one does not block a rollout.
REQUIRED_SECTIONS = (
    "model_details",
    "intended_use",
    "factors",
    "metrics",
    "evaluation_data",
    "training_data",
    "caveats_and_recommendations",
)


@dataclass(frozen=True)
class ModelCard:
    """The free-text sections of a model card; each is Markdown."""

    model_details: str = ""
    intended_use: str = ""
    factors: str = ""
    metrics: str = ""
    evaluation_data: str = ""
    training_data: str = ""
    quantitative_analyses: str = ""
    ethical_considerations: str = ""
    caveats_and_recommendations: str = ""
    # Only an optimised version has it: how it was made from its source and the parity check.
    optimization: str = ""

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"model card: unknown sections {unknown}; known are {sorted(known)}"
            raise RegistryError(msg)
        return cls(**{key: str(value) for key, value in data.items()})

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        return cls.from_dict(orjson.loads(text) if text else {})

    def missing_sections(self) -> list[str]:
        """The required sections that are blank."""
        return [name for name in REQUIRED_SECTIONS if not getattr(self, name).strip()]


def card_is_complete(card: ModelCard) -> bool:
    """Whether every required section of the card says something."""
    return not card.missing_sections()


def render_card(version: ModelVersion) -> str:
    """The whole card of one version as Markdown, with the registry's facts around it."""
    card = version.card
    lines = [f"# Model card: {version.name} {version.version}", ""]
    lines += [
        f"- flavor: `{version.flavor}`",
        f"- sha256: `{version.sha256}`",
        f"- created: {version.created_at.isoformat()} by {version.created_by}",
        f"- NaN policy: `{version.nan_policy}`",
        "",
    ]
    for name, title in SECTION_TITLES.items():
        text = getattr(card, name).strip()
        if name == "optimization" and not text:
            continue
        if name == "quantitative_analyses" and not text:
            text = _metrics_table(version.metrics)
        lines += [f"## {title}", "", text or "_not provided_", ""]
    lines += ["## Signature", "", "| input | dtype |", "|---|---|"]
    lines += [f"| {c.name} | {c.dtype} |" for c in version.signature.inputs]
    out = version.signature.output
    lines += ["", f"Output: `{out.name}` ({out.dtype})", ""]
    lineage = version.lineage
    delta_version = lineage.training_table_version
    lines += [
        "## Lineage",
        "",
        f"- training table: `{lineage.training_table or '-'}` "
        f"(Delta version {'-' if delta_version is None else delta_version})",
        f"- git commit: `{lineage.git_commit or '-'}`",
        f"- lakecast: {lineage.lakecast_version}",
        "- trained with: "
        + (", ".join(f"{k} {v}" for k, v in sorted(lineage.libraries.items())) or "unknown"),
        f"- parameters: `{orjson.dumps(lineage.parameters, option=orjson.OPT_SORT_KEYS).decode()}`",
    ]
    if lineage.optimized_from:
        lines.append(f"- optimized from: `{lineage.optimized_from}`")
    missing = card.missing_sections()
    if missing:
        lines += ["", f"> Incomplete card: missing {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def _metrics_table(metrics: Mapping[str, float]) -> str:
    if not metrics:
        return ""
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {name} | {value:.6g} |" for name, value in sorted(metrics.items())]
    return "\n".join(rows)
