"""Load traces for the autoscaling benchmarks: a synthetic day with a spike, and NAB's curves.

A trace is events per second for each second of a replay. The synthetic one is a daily curve
(night, noon, night) with a flash-sale spike just after noon of its last day; the real ones are
the Twitter-volume (``realTweets``) and road-traffic (``realTraffic``) series of the NAB dev
subset, where each 5-minute point becomes one second of load (a day lasts 288 s) and the values
are scaled so that the peak needs the pool's maximum replicas.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

NAB_DATA = Path("/work/shared/datasets/nab-dev/data")
NAB_SERIES = ("realTweets", "realTraffic")
NAB_DAY_S = 288  # 5-minute points in a day: one point per second of load
PEAK_UTILISATION = 0.9  # the peak is 90 % of max_replicas workers: one fewer cannot serve it


@dataclass(frozen=True)
class Trace:
    """Events per second for each second of the replay."""

    rates: tuple[float, ...]
    spike: tuple[int, int] | None = None  # [start, end) seconds
    name: str = "trace"
    season_s: int | None = None  # the length of its day, where it has one

    @property
    def events(self) -> int:
        return sum(self.counts())

    def counts(self) -> list[int]:
        return [round(r) for r in self.rates]

    def describe(self) -> str:
        low, high = min(self.rates), max(self.rates)
        if self.spike is None:
            return (
                f"{len(self.rates):,} s, {self.events:,} events, {low:,.0f} -> {high:,.0f} events/s"
            )
        start, end = self.spike
        day = max(r for t, r in enumerate(self.rates) if not start <= t < end)
        return (
            f"{len(self.rates)} s, {self.events:,} events: daily curve {low:,.0f} -> {day:,.0f} "
            f"-> {low:,.0f} events/s, spike {high:,.0f} events/s over [{start}, {end}) s"
        )

    def sparkline(self, width: int = 60) -> str:
        bars = " ▁▂▃▄▅▆▇█"
        step = max(1, math.ceil(len(self.rates) / width))
        top = max(self.rates) or 1.0
        cells = [max(self.rates[i : i + step]) for i in range(0, len(self.rates), step)]
        return "".join(bars[min(8, round(8 * c / top))] for c in cells)

    def scaled(self, peak: float) -> Trace:
        """The same curve with its highest second at ``peak`` events/s."""
        top = max(self.rates)
        if top <= 0:
            msg = f"trace {self.name}: no load to scale"
            raise ValueError(msg)
        rates = tuple(r * peak / top for r in self.rates)
        return Trace(rates, self.spike, self.name, self.season_s)


def daily_trace(
    base: float,
    seconds: int,
    *,
    day_factor: float,
    spike_factor: float,
    spike_s: int,
    days: int = 1,
) -> Trace:
    """``base`` at night, ``day_factor * base`` at noon (a raised cosine), then a spike.

    Each day lasts ``seconds``; the spike (``spike_factor * base`` for ``spike_s`` seconds)
    comes on the last day only, just after noon, when the fleet is already at its daytime
    size, as a flash sale would: the days before it are the history a forecast learns from.
    """
    start = min(int(seconds * 0.55), max(seconds - spike_s, 0)) + (days - 1) * seconds
    rates = []
    for t in range(seconds * days):
        curve = (1 - math.cos(2 * math.pi * (t % seconds) / seconds)) / 2
        rate = base * (1 + (day_factor - 1) * curve)
        if start <= t < start + spike_s:
            rate = base * spike_factor
        rates.append(rate)
    return Trace(tuple(rates), (start, start + spike_s), "daily+spike", seconds)


def nab_values(path: Path) -> list[float]:
    """The ``value`` column of a NAB csv, in file order."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [float(row["value"]) for row in csv.DictReader(handle)]


def nab_trace(path: Path, peak: float) -> Trace:
    """One NAB series as a trace: a point per second, its peak at ``peak`` events/s."""
    values = nab_values(path)
    name = f"{path.parent.name}/{path.stem}"
    return Trace(tuple(values), None, name, NAB_DAY_S).scaled(peak)


def nab_traces(peak: float, root: Path = NAB_DATA) -> list[Trace]:
    """Every realTweets and realTraffic series, sorted by name."""
    files = sorted(f for series in NAB_SERIES for f in (root / series).glob("*.csv"))
    if not files:
        msg = f"no NAB series under {root} ({', '.join(NAB_SERIES)})"
        raise FileNotFoundError(msg)
    return [nab_trace(f, peak) for f in files]


def peak_rate(capacity: float, max_replicas: int) -> float:
    """The peak a trace is scaled to: it needs all ``max_replicas`` workers."""
    return PEAK_UTILISATION * capacity * max_replicas
