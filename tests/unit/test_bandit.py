"""Thompson sampling: Beta posteriors, deterministic by seed, moves traffic to the winner."""

from __future__ import annotations

import numpy as np
import pytest

from lakecast.rollout.bandit import ThompsonBandit


def _simulate(seed: int, rounds: int = 4_000) -> tuple[ThompsonBandit, list[str]]:
    """Serve ``rounds`` requests; variant b converts at 10 %, a at 5 %."""
    rates = {"a": 0.05, "b": 0.10}
    bandit = ThompsonBandit(["a", "b"], seed=seed)
    world = np.random.default_rng(seed + 1_000)
    chosen = []
    for _ in range(rounds):
        variant = bandit.choose()
        chosen.append(variant)
        bandit.record_impression(variant)
        if world.random() < rates[variant]:
            bandit.record_reward(variant)
    return bandit, chosen


def test_starts_even_under_the_uniform_prior() -> None:
    bandit = ThompsonBandit(["a", "b"], seed=3)
    weights = bandit.weights(draws=20_000)
    assert weights["a"] == pytest.approx(0.5, abs=0.02)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert bandit.means() == {"a": 0.5, "b": 0.5}


def test_most_traffic_goes_to_the_better_variant() -> None:
    bandit, chosen = _simulate(seed=7)
    late = chosen[-1_000:]
    assert late.count("b") / len(late) > 0.75
    assert bandit.weights()["b"] > 0.8
    means = bandit.means()
    assert means["b"] > means["a"]
    assert bandit.arms["b"].impressions > bandit.arms["a"].impressions


def test_same_seed_same_decisions() -> None:
    _, first = _simulate(seed=11, rounds=500)
    _, again = _simulate(seed=11, rounds=500)
    assert first == again


def test_posterior_follows_the_counts() -> None:
    bandit = ThompsonBandit(["a", "b"], seed=0)
    bandit.record_impression("a", 100)
    bandit.record_reward("a", 30)
    bandit.record_impression("b", 100)
    bandit.record_reward("b", 5)
    # Beta(1 + 30, 1 + 70) and Beta(1 + 5, 1 + 95)
    assert bandit.means()["a"] == pytest.approx(31 / 102)
    assert bandit.means()["b"] == pytest.approx(6 / 102)
    assert bandit.weights()["a"] > 0.99


def test_rewards_before_impressions_do_not_make_negative_misses() -> None:
    bandit = ThompsonBandit(["a", "b"], seed=0)
    bandit.record_reward("a", 3)
    assert bandit.arms["a"].alpha_beta(1.0, 1.0) == (4.0, 1.0)


def test_state_round_trips() -> None:
    bandit, _ = _simulate(seed=5, rounds=300)
    again = ThompsonBandit.from_dict(bandit.to_dict())
    assert again.means() == bandit.means()
    assert again.variants == bandit.variants


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="two distinct"):
        ThompsonBandit(["a"])
    with pytest.raises(ValueError, match="two distinct"):
        ThompsonBandit(["a", "a"])
    with pytest.raises(ValueError, match="positive"):
        ThompsonBandit(["a", "b"], prior_alpha=0)
    bandit = ThompsonBandit(["a", "b"])
    with pytest.raises(KeyError, match="no variant 'c'"):
        bandit.record_impression("c")
    with pytest.raises(ValueError, match="negative"):
        bandit.record_reward("a", -1)
