"""The results table's statistics, written out (no scipy): the 95% Wilson interval of a success rate
over episodes, the mean and 95% Student-t interval over seeds, the exact two-sided sign test, and the
game-level statistics.

The game is the unit of evidence: every training seed of an arm plays the same games, and outcomes
cluster by game (some games every policy solves, some none does), so 4 seeds x 50 games are not 200
independent episodes. The game-level statistics treat a game's outcomes over the seeds as one
observation: a paired difference per game (game_diffs), the exact sign-flip permutation test on
those differences, the sign test over games, bootstrap intervals that resample games (seeds stay
together), and the minimum detectable difference of the design. report.py's results table reads
them; tests/test_stats.py checks them against scipy and brute force.
"""
from __future__ import annotations

import math
import random

Z_975, Z_80 = 1.959964, 0.841621  # standard normal quantiles: two-sided 5% test, 80% power


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n (sensible at 0/n and n/n, unlike k/n ± ...)."""
    return wilson_rate(k / n, n, z) if n else (0.0, 0.0)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (McNemar's exact test) on paired episodes: the probability of a
    split at least this uneven if each discordant pair (one method solves the task, the other not)
    were a coin flip. Ties (both solve or both fail) carry no information and are left out."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function with df degrees of freedom."""
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on t_cdf; exact to ~1e-10 for any df, no tables)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95% Student-t interval over seeds (0 for a single seed)."""
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    m = sum(values) / n
    if n == 1:
        return (m, 0.0)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return (m, t_quantile(0.975, n - 1) * sd / math.sqrt(n))


# ---------------------------------------------------------------------------------------------
# The game as the unit
def game_outcomes(per_seed: dict) -> dict:
    """{seed: {game: solved}} -> {game: [solved on each seed that read it]}."""
    out: dict = {}
    for seed in sorted(per_seed):
        for game, solved in per_seed[seed].items():
            out.setdefault(game, []).append(int(bool(solved)))
    return out


def game_rates(per_seed: dict) -> list[float]:
    """Each game's solved fraction over the seeds that read it (the per-game observations)."""
    return [sum(v) / len(v) for v in game_outcomes(per_seed).values()]


def game_diffs(a: dict, b: dict) -> list[int]:
    """Paired per-game differences of two arms, {seed: {game: solved}} each: for every game both read
    on shared seeds, (games solved by a) - (by b) summed over those seeds, an integer in [-S, S]."""
    seeds = sorted(a.keys() & b.keys())
    games = sorted(set.intersection(*[set(a[s]) & set(b[s]) for s in seeds])) if seeds else []
    return [sum(int(bool(a[s][g])) - int(bool(b[s][g])) for s in seeds) for g in games]


def sign_flip_test(diffs: list[int]) -> float:
    """Exact two-sided permutation test of paired integer differences: under "no difference" each
    game's difference is as likely to have either sign, so the 2^n sign flips are equally likely.
    p = P(|sum of flipped diffs| >= |observed sum|), computed exactly by dynamic programming over
    the possible sums (no sampling, any number of games)."""
    nonzero = [int(d) for d in diffs if d]
    if not nonzero:
        return 1.0
    observed = abs(sum(nonzero))
    dist = {0: 1}  # sum of the flipped differences -> number of sign patterns giving it
    for d in nonzero:
        nxt: dict = {}
        for v, c in dist.items():
            nxt[v + d] = nxt.get(v + d, 0) + c
            nxt[v - d] = nxt.get(v - d, 0) + c
        dist = nxt
    extreme = sum(c for v, c in dist.items() if abs(v) >= observed)
    return min(1.0, extreme / 2 ** len(nonzero))


def bootstrap_mean(values: list[float], n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling the values (games) with replacement."""
    if not values:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    k = len(values)
    means = sorted(sum(values[rng.randrange(k)] for _ in range(k)) / k for _ in range(n))
    return (means[int(0.025 * n)], means[int(0.975 * n) - 1])


def game_interval(per_game: list[float]) -> tuple[float, float]:
    """95% interval of a success rate with the game as the unit: the game bootstrap, widened where
    needed to the Wilson interval over the games (at 0% or 100%, or with few games, every resample
    is alike and the bootstrap interval collapses to a point)."""
    if not per_game:
        return (float("nan"), float("nan"))
    lo, hi = bootstrap_mean(per_game)
    w_lo, w_hi = wilson_rate(sum(per_game) / len(per_game), len(per_game))
    return (min(lo, w_lo), max(hi, w_hi))


def wilson_rate(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson interval of a rate p over n units (p need not be a whole count over n: a mean of
    per-game rates)."""
    if n == 0:
        return (0.0, 0.0)
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def min_detectable(per_game: list[float], alpha_z: float = Z_975, power_z: float = Z_80) -> float:
    """The smallest true mean difference a two-sided 5% paired test over these games detects with 80%
    power (normal approximation): (z_0.975 + z_0.80) x sd / sqrt(n), sd the per-game differences'
    standard deviation. 0 for fewer than two games."""
    n = len(per_game)
    if n < 2:
        return float("nan")
    m = sum(per_game) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in per_game) / (n - 1))
    return (alpha_z + power_z) * sd / math.sqrt(n)
