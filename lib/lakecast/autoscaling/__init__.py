"""Autoscaling of the inference workers: the policy file, the rules and the controller.

``conf/autoscale.json`` keeps the classic CPU policy shape (``scale_up_policy`` /
``scale_down_policy``) and adds KEDA's consumer-lag targets. Per metric the HPA rule
``ceil(current * value / target)`` (no change within the 10 % tolerance), for the lag KEDA's
``ceil(total_lag / lag_threshold)`` capped at the partition count; the largest wins, clamped
to ``[min_replicas, max_replicas]``. Scale-up is immediate; scale-down waits for the
stabilisation window (the highest recommendation of the window wins), never moves more than
``max_step`` replicas at once and is blocked while the monitor has a throughput or lag anomaly
open. With ``min_replicas: 0`` an idle group (no lag, no throughput for the whole window)
goes to zero and comes back when the lag exceeds ``activation_lag_threshold``.

The same figures on Kubernetes
------------------------------

Every number of the policy file has its counterpart in a KEDA ``ScaledObject`` (which drives
an HPA) or in a plain HPA, so a fleet moved from the local worker pool to a cluster keeps its
behaviour:

====================================== =====================================================
``conf/autoscale.json``                KEDA ``ScaledObject`` / HPA
====================================== =====================================================
``consumer_lag.lag_threshold``         kafka trigger ``lagThreshold``
``consumer_lag.activation_lag_...``    kafka trigger ``activationLagThreshold``
``consumer_lag.cap_at_partitions``     kafka trigger ``allowIdleConsumers: "false"`` (default)
``scale_up_policy`` CPUUtilization 70  cpu trigger ``metricType: Utilization``, ``value: "70"``
``min_replicas`` / ``max_replicas``    ``minReplicaCount`` / ``maxReplicaCount``
``windows.evaluation_interval_s``      ``pollingInterval`` (and the HPA's 15 s sync period)
``windows.scale_down_stabilization_s`` ``behavior.scaleDown.stabilizationWindowSeconds``;
                                       ``cooldownPeriod`` for the last step, 1 -> 0
``max_step``                           ``behavior.scaleUp/scaleDown.policies``: Pods, value
``tolerance``                          ``--horizontal-pod-autoscaler-tolerance`` (0.1)
====================================== =====================================================

.. code-block:: yaml

    apiVersion: keda.sh/v1alpha1
    kind: ScaledObject
    metadata:
      name: lakecast-inference
    spec:
      scaleTargetRef:
        name: lakecast-inference-worker      # the Deployment running streaming/inference_worker.py
      pollingInterval: 15                    # windows.evaluation_interval_s
      cooldownPeriod: 300                    # idle this long before 1 -> 0
      minReplicaCount: 0                     # min_replicas (0 = scale to zero)
      maxReplicaCount: 6                     # max_replicas
      advanced:
        horizontalPodAutoscalerConfig:
          behavior:
            scaleUp:
              stabilizationWindowSeconds: 0  # scale-up at once
              policies: [{type: Pods, value: 4, periodSeconds: 15}]   # max_step
            scaleDown:
              stabilizationWindowSeconds: 300                         # scale_down_stabilization_s
              policies: [{type: Pods, value: 4, periodSeconds: 15}]   # max_step
      triggers:
        - type: kafka
          metadata:
            bootstrapServers: kafka:9092
            consumerGroup: lakecast-inference
            topic: events
            lagThreshold: "100"              # consumer_lag.lag_threshold
            activationLagThreshold: "10"     # consumer_lag.activation_lag_threshold
            allowIdleConsumers: "false"      # cap at the partition count
        - type: cpu
          metricType: Utilization
          metadata:
            value: "70"                      # scale_up_policy.target_value

Without KEDA, an HPA (``autoscaling/v2``) with an External metric computes the same lag rule:
with ``target: {type: AverageValue, averageValue: "100"}`` on the group's total lag (exported,
for instance, by a Prometheus adapter from ``kafka_consumergroup_lag``) the HPA asks for
``ceil(total_lag / 100)`` replicas, next to a ``Resource`` cpu metric with
``averageUtilization: 70``; the largest wins there too. A plain HPA cannot go below one
replica, and it has no partition cap: set ``maxReplicas`` to the partition count.

What has no counterpart there: ``scale_down_policy.target_value`` (30) makes a band in which
nothing happens; the HPA has one target per metric, which is what a policy with equal up and
down targets reproduces exactly. The anomaly hold is ours too. And ``cpu_percent`` here is
per process (100 = one core), where Kubernetes counts a share of the pod's CPU request.
"""

from __future__ import annotations

from lakecast.autoscaling.algorithm import (
    Observation,
    Recommendation,
    hpa_replicas,
    lag_replicas,
    limit_step,
    recommend,
    stabilise,
)
from lakecast.autoscaling.controller import (
    DESIRED_REPLICAS,
    Anomaly,
    ScalingController,
    WorkerSample,
)
from lakecast.autoscaling.decision import ScalingDecision
from lakecast.autoscaling.policy import AutoscalePolicy, load_policy, parse_policy

__all__ = [
    "DESIRED_REPLICAS",
    "Anomaly",
    "AutoscalePolicy",
    "Observation",
    "Recommendation",
    "ScalingController",
    "ScalingDecision",
    "WorkerSample",
    "hpa_replicas",
    "lag_replicas",
    "limit_step",
    "load_policy",
    "parse_policy",
    "recommend",
    "stabilise",
]
