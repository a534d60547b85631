"""Prometheus metrics of the monitor and the autoscaler, defined once (``lakecast_`` prefix).

Label values stay few: a series label is ``source/metric`` (workers times six metrics), a
service label is the service's name. ``lakecast_desired_replicas`` lives with the controller
that sets it (:mod:`lakecast.autoscaling.controller`). The endpoint that serves them is
:mod:`lakecast.monitoring.endpoint`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ANOMALY_SCORE = Gauge(
    "lakecast_anomaly_score",
    "Latest anomaly score in [0, 1] of a monitored series (source/metric).",
    ["series"],
)
SERIES_VALUE = Gauge(
    "lakecast_monitored_value",
    "Latest value of a monitored series (source/metric), as the detector saw it.",
    ["series"],
)
EVICTED_SERIES = Counter(
    "lakecast_monitor_evicted_series_total",
    "Series the monitor forgot: idle past series_idle_s, or the longest idle over max_series.",
)
ANOMALIES = Counter(
    "lakecast_anomalies_total",
    "Anomaly records the monitor wrote, by metric.",
    ["metric"],
)
METRICS_RECORDS = Counter(
    "lakecast_metrics_records_total",
    "Records a service read from the metrics topic, by kind (sample, anomaly, scaling, ...).",
    ["service", "kind"],
)
BAD_RECORDS = Counter(
    "lakecast_bad_metrics_records_total",
    "Records of the metrics topic a service skipped because they broke the contract.",
    ["service"],
)
CURRENT_REPLICAS = Gauge(
    "lakecast_current_replicas",
    "Worker processes of a consumer group running now, as the autoscaler counts them.",
    ["group"],
)
GROUP_LAG = Gauge(
    "lakecast_group_lag",
    "Total consumer lag of a group (end offsets minus committed offsets) from the broker.",
    ["group"],
)
SCALING_DECISIONS = Counter(
    "lakecast_scaling_decisions_total",
    "Decisions of the autoscaler, by direction (up, down, hold).",
    ["group", "direction"],
)
MODEL_QUALITY = Gauge(
    "lakecast_model_quality",
    "Latest outcome metric of a model version and variant (auc, log_loss, brier, ece, "
    "base_rate, count) from kind=quality records, for the day they were computed on.",
    ["model", "version", "variant", "metric"],
)
MODEL_AGE = Gauge(
    "lakecast_model_age_seconds",
    "Age of a served model version since the end of its training data (kind=staleness).",
    ["model", "version", "alias"],
)
SNAPSHOT_AGE = Gauge(
    "lakecast_entity_snapshot_age_seconds",
    "Age of the newest entity-feature snapshot since the end of its day (kind=staleness).",
)
NONFINITE_SCORES = Counter(
    "lakecast_nonfinite_scores_total",
    "NaN or infinite scores a model version produced (never served: dead-lettered by the "
    "workers, null in batch predictions), from the workers' samples and batch runs.",
    ["model", "version"],
)
FEATURE_DRIFT = Gauge(
    "lakecast_feature_drift",
    "Drift of a served feature from the version's training set (kind=drift): statistic psi "
    "or ks, over the drift job's latest window.",
    ["model", "version", "feature", "statistic"],
)
