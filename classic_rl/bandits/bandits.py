"""K-armed bandits and the four classic solvers: ε-greedy, decaying ε (1/t), UCB and Thompson sampling.

A bandit is a one-state MDP: each step the agent pulls an arm ``k`` and receives a reward drawn from that arm's
distribution with unknown mean ``q*(k)``. The quantity we plot is the *cumulative (pseudo-)regret*

    R_T = Σ_{t=1..T} ( max_a q*(a) − q*(a_t) ),

which uses the true means, so it is not noisy in the rewards, only in the choices made.

Randomness: every bandit and solver takes an ``rng`` with the three methods ``random()``, ``integers(low, high)``
and ``beta(a, b)`` / ``normal(loc, scale)``. A ``numpy.random.Generator`` has them; :class:`LegacyRNG` wraps the
old global-state ``RandomState`` so the notes' exact numbers (which used ``np.random.seed(1)``) can be reproduced.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class RNG(Protocol):
    """The subset of ``numpy.random.Generator`` the bandits use."""

    def random(self) -> float: ...
    def integers(self, low: int, high: int) -> int: ...
    def uniform(self, size: int) -> np.ndarray: ...
    def normal(self, loc=0.0, scale=1.0, size=None): ...  # noqa: ANN001, ANN201
    def beta(self, a: np.ndarray, b: np.ndarray) -> np.ndarray: ...


class LegacyRNG:
    """``np.random.RandomState`` behind the Generator method names.

    ``np.random.seed(s)`` followed by ``np.random.rand()`` / ``randint`` / ``beta`` (the notes' code) draws exactly
    the same numbers as ``RandomState(s)``; sharing one instance between bandit and solver reproduces the notes'
    interleaving of draws (solver draw, then the bandit's reward draw, every step)."""

    def __init__(self, seed: int):
        self.state = np.random.RandomState(seed)

    def random(self) -> float:
        return self.state.random_sample()

    def integers(self, low: int, high: int) -> int:
        return int(self.state.randint(low, high))

    def uniform(self, size: int) -> np.ndarray:
        return self.state.uniform(size=size)

    def normal(self, loc=0.0, scale=1.0, size=None):  # noqa: ANN001, ANN201
        return self.state.normal(loc, scale, size)

    def beta(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.state.beta(a, b)


# ----------------------------------------------------------------------------------------------------------------
# Bandits
# ----------------------------------------------------------------------------------------------------------------
class BernoulliBandit:
    """K arms; arm k pays 1 with probability ``probs[k]`` and 0 otherwise, so ``q*(k) = probs[k]``."""

    kind = "bernoulli"

    def __init__(self, probs: np.ndarray, rng: RNG):
        self.probs = np.asarray(probs, dtype=np.float64)  # [K]
        self.K = len(self.probs)
        self.means = self.probs
        # The best arm is the argmax of the true probabilities. (The notes drew a *random* array here instead,
        # which then indexed probs with floats: best_prob was meaningless and the regret wrong.)
        self.best_idx = int(np.argmax(self.probs))
        self.best_mean = float(self.probs[self.best_idx])
        self.rng = rng

    @classmethod
    def random(cls, K: int, rng: RNG) -> BernoulliBandit:
        """Success probabilities drawn uniformly from [0, 1), as in the notes."""
        return cls(rng.uniform(size=K), rng)

    def pull(self, k: int) -> float:
        return 1.0 if self.rng.random() < self.probs[k] else 0.0


class GaussianBandit:
    """Sutton & Barto's 10-armed testbed: means ``q*(k) ~ N(0, 1)``, rewards ``~ N(q*(k), sigma²)``."""

    kind = "gaussian"

    def __init__(self, means: np.ndarray, rng: RNG, sigma: float = 1.0):
        self.means = np.asarray(means, dtype=np.float64)  # [K]
        self.K = len(self.means)
        self.sigma = sigma
        self.best_idx = int(np.argmax(self.means))
        self.best_mean = float(self.means[self.best_idx])
        self.rng = rng

    @classmethod
    def random(cls, K: int, rng: RNG, sigma: float = 1.0) -> GaussianBandit:
        return cls(rng.normal(0.0, 1.0, size=K), rng, sigma)

    def pull(self, k: int) -> float:
        return float(self.rng.normal(self.means[k], self.sigma))


Bandit = BernoulliBandit | GaussianBandit


# ----------------------------------------------------------------------------------------------------------------
# Solvers
# ----------------------------------------------------------------------------------------------------------------
class Solver:
    """Keeps the pull counts N(a) and the incremental sample means Q̂(a); subclasses only choose the arm."""

    name = "solver"

    def __init__(self, bandit: Bandit, rng: RNG, init_estimate: float = 1.0):
        self.bandit = bandit
        self.rng = rng
        self.counts = np.zeros(bandit.K)  # N(a)
        # Q̂(a) starts optimistic (1.0 for Bernoulli, the notes' init_prob): untried arms look good, which is
        # itself a mild form of exploration.
        self.estimates = np.full(bandit.K, float(init_estimate))
        self.t = 0  # steps taken so far

    def choose(self) -> int:
        raise NotImplementedError

    def update(self, k: int, reward: float) -> None:
        # Incremental mean: Q̂ ← Q̂ + (r − Q̂) / (N + 1), N counting earlier real pulls only (as in the notes),
        # so the first reward replaces the initial value: optimism only lasts until an arm is tried.
        self.estimates[k] += (reward - self.estimates[k]) / (self.counts[k] + 1)
        self.counts[k] += 1

    def step(self) -> int:
        self.t += 1
        k = self.choose()
        self.update(k, self.bandit.pull(k))
        return k

    def run(self, steps: int) -> np.ndarray:
        """Play ``steps`` rounds; return the cumulative regret after each one, shape [steps]."""
        gaps = self.bandit.best_mean - self.bandit.means  # [K] Δ(a) = q*(a*) − q*(a)
        per_step = np.empty(steps)
        for i in range(steps):
            per_step[i] = gaps[self.step()]
        return np.cumsum(per_step)


class EpsilonGreedy(Solver):
    """With probability ε a uniformly random arm, otherwise argmax Q̂ (ties -> lowest index, as np.argmax)."""

    def __init__(self, bandit: Bandit, rng: RNG, epsilon: float = 0.01, init_estimate: float = 1.0):
        super().__init__(bandit, rng, init_estimate)
        self.epsilon = epsilon
        self.name = f"eps-greedy({epsilon:g})"

    def current_epsilon(self) -> float:
        return self.epsilon

    def choose(self) -> int:
        if self.rng.random() < self.current_epsilon():
            return self.rng.integers(0, self.bandit.K)
        return int(np.argmax(self.estimates))


class DecayingEpsilonGreedy(EpsilonGreedy):
    """ε_t = 1/t: explores a lot at first, then almost never; the total exploration grows only like log T."""

    def __init__(self, bandit: Bandit, rng: RNG, init_estimate: float = 1.0):
        super().__init__(bandit, rng, 1.0, init_estimate)
        self.name = "eps=1/t"

    def current_epsilon(self) -> float:
        return 1.0 / self.t


class UCB(Solver):
    """Upper confidence bound with the notes' Hoeffding bonus: a_t = argmax Q̂(a) + c·sqrt(ln t / (2 (N(a)+1))).

    Hoeffding: for rewards in [0, 1], P(q* ≥ Q̂ + u) ≤ exp(−2 N u²). Setting that probability to p = 1/t and
    solving for u gives u = sqrt(ln t / (2N)); the +1 avoids dividing by zero for untried arms and ``coef``
    scales the bonus (coef 1 is the bound itself; smaller exploits more)."""

    def __init__(self, bandit: Bandit, rng: RNG, coef: float = 1.0, init_estimate: float = 1.0):
        super().__init__(bandit, rng, init_estimate)
        self.coef = coef
        self.name = f"UCB(c={coef:g})"

    def choose(self) -> int:
        bonus = self.coef * np.sqrt(np.log(self.t) / (2 * (self.counts + 1)))  # [K]
        return int(np.argmax(self.estimates + bonus))


class ThompsonSampling(Solver):
    """Bernoulli arms: Beta(1, 1) prior, posterior Beta(1 + successes, 1 + failures); pull the argmax of one
    posterior sample per arm. Gaussian arms (known σ): N(0, 1) prior on the mean, the conjugate normal posterior
    N(μ_n, 1/(1 + n/σ²)) with μ_n = (Σ r / σ²) / (1 + n/σ²)."""

    name = "Thompson"

    def __init__(self, bandit: Bandit, rng: RNG):
        super().__init__(bandit, rng, 0.0)
        self.a = np.ones(bandit.K)  # Beta α: 1 + successes
        self.b = np.ones(bandit.K)  # Beta β: 1 + failures
        self.reward_sum = np.zeros(bandit.K)

    def choose(self) -> int:
        if self.bandit.kind == "bernoulli":
            return int(np.argmax(self.rng.beta(self.a, self.b)))
        precision = 1.0 + self.counts / self.bandit.sigma**2  # [K] posterior precision of the mean
        mean = (self.reward_sum / self.bandit.sigma**2) / precision
        return int(np.argmax(self.rng.normal(mean, 1.0 / np.sqrt(precision))))

    def update(self, k: int, reward: float) -> None:
        super().update(k, reward)
        self.a[k] += reward
        self.b[k] += 1.0 - reward
        self.reward_sum[k] += reward


SOLVERS = ("eps-greedy", "eps-decay", "ucb", "thompson")


def make_solver(name: str, bandit: Bandit, rng: RNG, *, epsilon: float = 0.01, ucb_coef: float = 1.0,
                init_estimate: float = 1.0) -> Solver:
    """Build one of :data:`SOLVERS` by name."""
    if name == "eps-greedy":
        return EpsilonGreedy(bandit, rng, epsilon, init_estimate)
    if name == "eps-decay":
        return DecayingEpsilonGreedy(bandit, rng, init_estimate)
    if name == "ucb":
        return UCB(bandit, rng, ucb_coef, init_estimate)
    if name == "thompson":
        return ThompsonSampling(bandit, rng)
    raise ValueError(f"unknown solver {name!r}; choose from {', '.join(SOLVERS)}")


def notes_setting_regrets(steps: int = 5000, seed: int = 1, K: int = 10) -> dict[str, float]:
    """The notes' experiment, draw for draw: ``np.random.seed(1)``, a 10-armed Bernoulli bandit, then
    ``np.random.seed(1)`` again before each solver runs 5000 steps. Returns the final regret per solver."""
    bandit = BernoulliBandit.random(K, LegacyRNG(seed))
    out = {}
    for name in SOLVERS:
        rng = LegacyRNG(seed)  # re-seeded per solver; the bandit's reward draws share the same stream
        bandit.rng = rng
        out[name] = float(make_solver(name, bandit, rng).run(steps)[-1])
    return out
