"""Safe rollout: sticky bucketing, feature flags, rollout strategies, bandits, canary analysis.

Everything here is pure logic over plain values, so the streaming worker, the rollout
controller and the CLI share one definition of who sees which model and when a candidate
may be promoted.
"""
