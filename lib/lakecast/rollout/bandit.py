"""A Thompson-sampling bandit over rollout variants, rewarded by purchases after a prediction.

Each variant has a Beta posterior on its reward rate, starting from Beta(1, 1): successes are
rewards, failures are impressions without one. :meth:`ThompsonBandit.choose` draws once per
variant and picks the best draw; :meth:`ThompsonBandit.weights` estimates, by many draws,
how often each variant would be picked, which is the traffic split the controller writes
into a :class:`~lakecast.rollout.strategies.Bandit` rollout (so routing stays sticky between
updates). The join of predictions with later purchases is done elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field


class ArmPosterior(BaseModel):
    """Counts for one variant; the posterior is Beta(alpha + rewards, beta + misses)."""

    model_config = ConfigDict(extra="forbid")

    impressions: int = Field(default=0, ge=0)
    rewards: int = Field(default=0, ge=0)

    def alpha_beta(self, prior_alpha: float, prior_beta: float) -> tuple[float, float]:
        # A reward can be counted before its impression arrives; misses never go negative.
        misses = max(self.impressions - self.rewards, 0)
        return prior_alpha + self.rewards, prior_beta + misses


class ThompsonBandit:
    """Thompson sampling with Beta priors, deterministic for a given seed and call order.

    Args:
        variants: the variant names, at least two.
        seed: seeds the sampler.
        prior_alpha: Beta prior's alpha (1: uniform prior).
        prior_beta: Beta prior's beta.

    Raises:
        ValueError: fewer than two or repeated variants, or a non-positive prior.
    """

    def __init__(
        self,
        variants: Sequence[str],
        *,
        seed: int | None = 0,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
    ) -> None:
        names = list(variants)
        if len(names) < 2 or len(set(names)) != len(names):
            msg = f"bandit needs at least two distinct variants, found {names}"
            raise ValueError(msg)
        if prior_alpha <= 0 or prior_beta <= 0:
            msg = f"bandit priors must be positive, found alpha={prior_alpha}, beta={prior_beta}"
            raise ValueError(msg)
        self.variants = tuple(names)
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        self.arms: dict[str, ArmPosterior] = {name: ArmPosterior() for name in names}
        self._rng = np.random.default_rng(seed)

    def _arm(self, variant: str) -> ArmPosterior:
        try:
            return self.arms[variant]
        except KeyError:
            msg = f"bandit has no variant {variant!r}; variants are {list(self.variants)}"
            raise KeyError(msg) from None

    def record_impression(self, variant: str, count: int = 1) -> None:
        """Count predictions served by ``variant``."""
        if count < 0:
            msg = f"impression count must not be negative, found {count}"
            raise ValueError(msg)
        self._arm(variant).impressions += count

    def record_reward(self, variant: str, count: int = 1) -> None:
        """Count rewards (purchases that followed a prediction of ``variant``)."""
        if count < 0:
            msg = f"reward count must not be negative, found {count}"
            raise ValueError(msg)
        self._arm(variant).rewards += count

    def _parameters(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        pairs = [
            self.arms[name].alpha_beta(self.prior_alpha, self.prior_beta) for name in self.variants
        ]
        alphas, betas = zip(*pairs, strict=True)
        return np.asarray(alphas, dtype=np.float64), np.asarray(betas, dtype=np.float64)

    def choose(self) -> str:
        """One Thompson draw: the variant whose sampled reward rate is highest."""
        alphas, betas = self._parameters()
        draws = self._rng.beta(alphas, betas)
        return self.variants[int(np.argmax(draws))]

    def weights(self, draws: int = 10_000) -> dict[str, float]:
        """The probability that each variant is the best, estimated from ``draws`` samples.

        These are the traffic shares Thompson sampling would give; they add up to 1.
        """
        if draws < 1:
            msg = f"draws must be at least 1, found {draws}"
            raise ValueError(msg)
        alphas, betas = self._parameters()
        samples = self._rng.beta(alphas, betas, size=(draws, len(self.variants)))
        wins = np.bincount(np.argmax(samples, axis=1), minlength=len(self.variants))
        return {name: float(wins[i]) / draws for i, name in enumerate(self.variants)}

    def means(self) -> dict[str, float]:
        """The posterior mean reward rate of each variant."""
        alphas, betas = self._parameters()
        return {
            name: float(alphas[i] / (alphas[i] + betas[i])) for i, name in enumerate(self.variants)
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the counts and priors (not the sampler's position)."""
        return {
            "prior_alpha": self.prior_alpha,
            "prior_beta": self.prior_beta,
            "arms": {name: self.arms[name].model_dump() for name in self.variants},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, seed: int | None = 0) -> ThompsonBandit:
        """A bandit from :meth:`to_dict`'s output."""
        arms = data["arms"]
        bandit = cls(
            list(arms),
            seed=seed,
            prior_alpha=float(data.get("prior_alpha", 1.0)),
            prior_beta=float(data.get("prior_beta", 1.0)),
        )
        for name, counts in arms.items():
            bandit.arms[name] = ArmPosterior.model_validate(counts)
        return bandit
