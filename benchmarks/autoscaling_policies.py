"""The policies the autoscaling benchmarks compare, simulated and with real workers.

* **fixed at the peak**: ``max_replicas`` workers for the whole trace, no autoscaler;
* **CPU only (HPA)**: ``CPUUtilization`` up 70 % / down 30 % (the lag rule neutralised by a
  threshold no backlog reaches);
* **CPU + lag (HPA/KEDA)**: the same plus KEDA's lag rule ``ceil(total_lag / lag_threshold)``;
* **predictive**: the same plus a ``predictive`` section: a forecast of the arrival rate takes
  the CPU rule's place, the lag rule stays the fast path and the stabilisation window the brake.

All share the windows, so only the rules differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lakecast.autoscaling.policy import AutoscalePolicy, parse_policy

# The predictive section's figures, chosen with ``autoscaling_sim.py --tune`` on its tuned traces:
# replicas for 60 % of their capacity at the forecast peak, 20 s ahead (a worker's measured
# start-up, 6.6 s, plus a few evaluations), the level over the last 15 s against the same 15 s
# of the last three days.
TUNED_PREDICTIVE = {"utilisation": 0.6, "horizon_s": 20.0, "level_window_s": 15.0, "seasons": 3}
NO_LAG_THRESHOLD = 1e12  # no backlog reaches it: the lag rule never recommends more than one
SAMPLE_INTERVAL_S = 2


@dataclass(frozen=True)
class Windows:
    evaluation_s: float = 3.0
    stabilisation_s: float = 20.0
    max_step: int = 2


def policy_document(
    *,
    lag_threshold: float,
    max_replicas: int,
    windows: Windows | None = None,
    predictive: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The benchmark's policy: ``conf/autoscale-demo.json`` with windows sized for a short trace."""
    w = windows or Windows()
    document: dict[str, Any] = {
        "scale_up_policy": {
            "metric_type": "CPUUtilization",
            "target_value": 70,
            "action": {"type": "proportional"},
        },
        "scale_down_policy": {
            "metric_type": "CPUUtilization",
            "target_value": 30,
            "action": {"type": "step", "adjustment": -1},
        },
        "consumer_lag": {
            "lag_threshold": lag_threshold,
            "activation_lag_threshold": 10,
            "cap_at_partitions": True,
        },
        "min_replicas": 1,
        "max_replicas": max_replicas,
        "max_step": w.max_step,
        "tolerance": 0.1,
        "windows": {
            "evaluation_interval_s": w.evaluation_s,
            "scale_down_stabilization_s": w.stabilisation_s,
            "sample_max_age_s": 3 * SAMPLE_INTERVAL_S,
        },
        # No monitor runs in the benchmark, so no anomaly would ever hold a scale-down.
        "anomalies": {"hold_s": 0, "metrics": []},
    }
    if predictive is not None:
        document["predictive"] = predictive
    return document


def predictive_section(
    capacity: float,
    *,
    season_s: float,
    horizon_s: float,
    utilisation: float = TUNED_PREDICTIVE["utilisation"],
    **extra: Any,
) -> dict[str, Any]:
    """The ``predictive`` section for workers of ``capacity`` events/s."""
    return {
        "records_per_replica": round(utilisation * capacity),
        "season_s": season_s,
        "horizon_s": horizon_s,
        **extra,
    }


@dataclass(frozen=True)
class Setup:
    """One line of a table: a fixed fleet (``policy`` None) or an autoscaling policy."""

    name: str
    policy: AutoscalePolicy | None
    fixed: int = 0

    def describe(self) -> str:
        if self.policy is None:
            return f"{self.fixed} workers for the whole trace, no autoscaler"
        p = self.policy
        lag = p.consumer_lag
        lag_text = (
            "lag rule off"
            if lag is None or lag.lag_threshold >= NO_LAG_THRESHOLD
            else f"lag_threshold {lag.lag_threshold:g}/replica"
        )
        forecast = ""
        if p.predictive is not None:
            f = p.predictive
            forecast = (
                f"forecast {f.horizon_s:g} s ahead (season {f.season_s:g} s) at "
                f"{f.records_per_replica:g} events/s per replica instead of CPU, "
            )
        return (
            f"{forecast}CPU up {p.scale_up_policy.target_value:g} % / down "
            f"{p.scale_down_policy.target_value:g} %, {lag_text}, replicas "
            f"{p.min_replicas}..{p.max_replicas}, step <= {p.max_step}, every "
            f"{p.windows.evaluation_interval_s:g} s, scale-down window "
            f"{p.windows.scale_down_stabilization_s:g} s"
        )


def setups(
    peak_workers: int,
    lag_threshold: float,
    *,
    windows: Windows | None = None,
    predictive: dict[str, Any] | None = None,
) -> list[Setup]:
    """Fixed, CPU only, CPU + lag and (given its section) predictive, sharing their windows."""
    cpu = policy_document(
        lag_threshold=NO_LAG_THRESHOLD, max_replicas=peak_workers, windows=windows
    )
    both = policy_document(lag_threshold=lag_threshold, max_replicas=peak_workers, windows=windows)
    chosen = [
        Setup("fixed at the peak", None, fixed=peak_workers),
        Setup("CPU only", parse_policy(cpu, "<benchmark: CPU only>")),
        Setup("CPU + lag", parse_policy(both, "<benchmark: CPU + lag>")),
    ]
    if predictive is not None:
        ahead = policy_document(
            lag_threshold=lag_threshold,
            max_replicas=peak_workers,
            windows=windows,
            predictive=predictive,
        )
        chosen.append(Setup("predictive", parse_policy(ahead, "<benchmark: predictive>")))
    return chosen
