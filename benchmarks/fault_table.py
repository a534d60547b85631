"""The row every fault campaign reports, and the table ``benchmarks/faults.py`` prints.

A campaign runs trials against real processes (workers, brokers, spark-submit jobs, registry
writers) and counts what came out: every input must end as exactly one output, so ``lost``
and ``duplicated`` are counts, never samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CampaignRow:
    """One campaign's totals over its trials."""

    campaign: str  # e.g. "kill -9 one of two workers"
    trials: int
    events: int  # inputs counted end to end (events, rows, changes, artifacts)
    lost: int
    duplicated: int
    worst_stall_s: float | None = None  # None where a stall means nothing (batch, registry)
    p99_stall_s: float | None = None
    note: str = ""  # what else the campaign checked, in a few words

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(rows: Sequence[CampaignRow]) -> str:
    """The campaigns as an aligned text table, one line each, the totals' verdict last."""
    header = ("campaign", "trials", "events", "lost", "dup", "p99 stall s", "worst stall s", "note")
    lines = [
        (
            row.campaign,
            str(row.trials),
            f"{row.events:,}",
            str(row.lost),
            str(row.duplicated),
            _seconds(row.p99_stall_s),
            _seconds(row.worst_stall_s),
            row.note,
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    out = [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in [header, *lines]
    ]
    verdict = "every row clean" if all(r.clean for r in rows) else "SOME ROWS LOST OR DOUBLED"
    return "\n".join([*out, "", f"{len(rows)} campaigns: {verdict}"])
