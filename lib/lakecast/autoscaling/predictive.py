"""The load forecast of the predictive policy: where the arrival rate is going next.

KEDA's predictkube and AWS predictive scaling both forecast the load from its own history and
scale before it arrives. Here the history is the group's arrival rate at each evaluation (the
records the workers consumed per second plus the growth of the lag, so a stalled or saturated
group does not hide load), and the forecast is:

* **seasonal naive with a level correction** once a full season is in the history: the rate one
  season ago (averaged over up to ``seasons`` past seasons) at each point of the horizon, shifted
  by how much the recent level differs from the level at the same time in those seasons (a day
  that runs 20 % busier than the last ones is forecast 20 % busier);
* **Holt's linear trend** before that: the recent level plus its least-squares slope, so a ramp
  is met ahead of time even on the first day.

The policy then asks for ``ceil(peak of the forecast / records_per_replica)`` replicas (see
:func:`lakecast.autoscaling.algorithm.predictive_recommendation`). The forecast never goes
below the rate measured now: a forecast of a quiet hour is no reason to drop workers faster
than the stabilisation window allows.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

from lakecast.autoscaling.policy import PredictivePolicy


@dataclass
class LoadForecaster:
    """The arrival-rate history of one consumer group and its forecast.

    Args:
        policy: the ``predictive`` section of the policy (season, horizon, windows).
    """

    policy: PredictivePolicy
    _ts: deque[float] = field(default_factory=deque, init=False, repr=False)
    _rates: deque[float] = field(default_factory=deque, init=False, repr=False)

    @property
    def history_s(self) -> float:
        """How far back the forecast looks: the seasons averaged, plus the horizon and window."""
        p = self.policy
        return p.season_s * p.seasons + p.horizon_s + p.level_window_s

    def observe(self, ts: float, rate: float) -> None:
        """Add the arrival rate measured at ``ts`` (seconds); older points are forgotten."""
        if self._ts and ts <= self._ts[-1]:
            return  # out of order or a repeat: the history stays monotonic
        self._ts.append(ts)
        self._rates.append(max(rate, 0.0))
        while self._ts and self._ts[0] < ts - self.history_s:
            self._ts.popleft()
            self._rates.popleft()

    def _mean(self, start: float, end: float) -> float | None:
        """Mean rate of the points in ``[start, end]``; None when there are none."""
        lo = bisect.bisect_left(self._ts, start)
        hi = bisect.bisect_right(self._ts, end)
        if hi <= lo:
            return None
        values = list(self._rates)[lo:hi]
        return sum(values) / len(values)

    def _at(self, ts: float, half_width: float) -> float | None:
        return self._mean(ts - half_width, ts + half_width)

    def seasonal(self, now: float, ahead: float) -> float | None:
        """The seasonal-naive forecast ``ahead`` seconds after ``now``; None without a season."""
        p = self.policy
        if not self._ts or self._ts[0] > now - p.season_s:
            return None
        half = p.step_s / 2
        past, levels = [], []
        for k in range(1, p.seasons + 1):
            back = k * p.season_s
            value = self._at(now + ahead - back, half)
            then = self._mean(now - back - p.level_window_s, now - back)
            if value is None or then is None:
                continue
            past.append(value)
            levels.append(then)
        recent = self._mean(now - p.level_window_s, now)
        if not past or recent is None:
            return None
        shift = recent - sum(levels) / len(levels)
        return max(sum(past) / len(past) + shift, 0.0)

    def trend(self, now: float, ahead: float) -> float | None:
        """Holt's linear forecast: the recent level plus its least-squares slope times ``ahead``."""
        window = self.policy.level_window_s
        lo = bisect.bisect_left(self._ts, now - window)
        ts, rates = list(self._ts)[lo:], list(self._rates)[lo:]
        if not rates:
            return None
        mean_t, mean_r = sum(ts) / len(ts), sum(rates) / len(rates)
        spread = sum((t - mean_t) ** 2 for t in ts)
        slope = (
            sum((t - mean_t) * (r - mean_r) for t, r in zip(ts, rates, strict=True)) / spread
            if spread > 0
            else 0.0
        )
        level = mean_r + slope * (now - mean_t)
        return max(level + slope * ahead, 0.0)

    def forecast(self, now: float, ahead: float) -> float | None:
        """The rate expected ``ahead`` seconds after ``now``: seasonal if it can, else trend."""
        value = self.seasonal(now, ahead)
        return value if value is not None else self.trend(now, ahead)

    def peak(self, now: float) -> float | None:
        """The highest rate forecast over ``[now, now + horizon_s]``, and never below the rate
        now; None before the first observation."""
        if not self._rates:
            return None
        p = self.policy
        steps = max(int(p.horizon_s // p.step_s), 1)
        values = [self.forecast(now, i * p.horizon_s / steps) for i in range(steps + 1)]
        known = [v for v in values if v is not None]
        return max([*known, self._rates[-1]])
