"""stats.py: intervals, the sign test, and the game-level statistics (the game as the unit), each
against hand-computed numbers and an independent reference (scipy, or brute force)."""
import itertools
import random

import pytest

import report
import stats


def test_intervals_against_hand_computed_numbers():
    lo, hi = stats.wilson(5, 10)  # p=0.5, n=10: 0.5 ± 0.2873 (Wilson)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert stats.wilson(0, 20)[0] == 0.0 and stats.wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    mean, half = stats.mean_ci([0.2, 0.4, 0.6])  # sd 0.2, t(2) = 4.303: 4.303 * 0.2 / sqrt(3)
    assert mean == pytest.approx(0.4) and half == pytest.approx(0.49687, abs=1e-4)
    assert stats.mean_ci([0.3]) == (0.3, 0.0)
    # exact two-sided sign test: 8 wins 1 loss -> 2 x (1 + 9) / 2^9; an even split -> 1; nothing -> 1
    assert stats.sign_test(8, 1) == pytest.approx(0.0390625)
    assert stats.sign_test(1, 8) == stats.sign_test(8, 1)
    assert stats.sign_test(3, 3) == 1.0 and stats.sign_test(0, 0) == 1.0
    assert stats.sign_test(5, 0) == pytest.approx(0.0625)


def test_statistics_against_an_independent_reference():
    # scipy, written independently of ours: t quantiles at any number of seeds (no table that
    # falls back to 1.96, 11% too narrow at 12 seeds), Wilson intervals, the exact sign test
    sp = pytest.importorskip("scipy.stats")

    for df in (1, 2, 3, 4, 7, 10, 11, 12, 15, 29, 30, 60, 200, 5000):
        assert stats.t_quantile(0.975, df) == pytest.approx(sp.t.ppf(0.975, df), rel=1e-9), df
        assert stats.t_quantile(0.05, df) == pytest.approx(sp.t.ppf(0.05, df), rel=1e-9), df
    rng = random.Random(0)
    for n_seeds in (2, 3, 5, 12, 40):
        values = [rng.random() for _ in range(n_seeds)]
        mean, half = stats.mean_ci(values)
        lo, hi = sp.t.interval(0.95, n_seeds - 1, loc=mean, scale=sp.sem(values))
        assert half == pytest.approx((hi - lo) / 2, rel=1e-8) and mean == pytest.approx(sum(values) / n_seeds)
    for k, n in ((0, 20), (5, 10), (7, 50), (50, 50), (1, 3), (33, 150)):
        ref = sp.binomtest(k, n).proportion_ci(0.95, method="wilson")
        got = stats.wilson(k, n)
        assert got[0] == pytest.approx(ref.low, abs=2e-4) and got[1] == pytest.approx(ref.high, abs=2e-4), (k, n)
    for w, l in ((8, 1), (0, 6), (12, 5), (40, 25), (3, 3), (100, 70)):
        assert stats.sign_test(w, l) == pytest.approx(sp.binomtest(w, w + l).pvalue, rel=1e-9), (w, l)


def _brute_sign_flip(diffs):
    """All 2^n sign patterns, counted one by one."""
    observed = abs(sum(diffs))
    hits = sum(abs(sum(s * d for s, d in zip(signs, diffs))) >= observed
               for signs in itertools.product((1, -1), repeat=len(diffs)))
    return hits / 2 ** len(diffs)


def test_sign_flip_test_is_exact():
    sp = pytest.importorskip("scipy.stats")
    rng = random.Random(1)
    for n, seeds in ((6, 1), (9, 3), (12, 4), (14, 2)):
        diffs = [rng.randint(-seeds, seeds) for _ in range(n)]
        nonzero = [d for d in diffs if d]
        assert stats.sign_flip_test(diffs) == pytest.approx(_brute_sign_flip(nonzero), abs=1e-12), diffs
        # scipy's exact paired permutation test of the mean difference (zeros flip to themselves)
        ref = sp.permutation_test((diffs,), lambda x, axis: x.mean(axis=axis), permutation_type="samples",
                                  n_resamples=float("inf"), alternative="two-sided")
        assert stats.sign_flip_test(diffs) == pytest.approx(ref.pvalue, rel=1e-9), diffs
    assert stats.sign_flip_test([0, 0]) == 1.0 and stats.sign_flip_test([]) == 1.0
    assert stats.sign_flip_test([1] * 10) == pytest.approx(2 / 2 ** 10)
    # with one seed (differences of +-1) it is the sign test
    assert stats.sign_flip_test([1] * 8 + [-1]) == pytest.approx(stats.sign_test(8, 1))


def test_game_diffs_pair_games_on_shared_seeds():
    a = {0: {"g1": True, "g2": False, "g3": True}, 1: {"g1": True, "g2": True, "g3": False}, 2: {"g1": False}}
    b = {0: {"g1": False, "g2": False, "g3": True}, 1: {"g1": False, "g2": True, "g3": True}}
    # shared seeds 0, 1; games g1 (2 - 0), g2 (1 - 1), g3 (1 - 2); seed 2 has no partner
    assert stats.game_diffs(a, b) == [2, 0, -1]
    assert stats.game_outcomes(a) == {"g1": [1, 1, 0], "g2": [0, 1], "g3": [1, 0]}
    assert stats.game_rates(b) == [0.0, 0.5, 1.0]


def test_game_bootstrap_against_scipy_and_clustered_data():
    sp = pytest.importorskip("scipy.stats")
    rng = random.Random(2)
    values = [rng.choice([0, 0, 1 / 3, 2 / 3, 1, 1]) for _ in range(50)]
    lo, hi = stats.bootstrap_mean(values)
    ref = sp.bootstrap((values,), lambda x, axis: x.mean(axis=axis), n_resamples=20_000, method="percentile",
                       random_state=0).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.02) and hi == pytest.approx(ref.high, abs=0.02)
    assert stats.bootstrap_mean(values) == (lo, hi)  # deterministic: the tables regenerate byte for byte
    # clustered outcomes (every seed agrees on a game): 4 seeds add nothing, and the game interval says
    # so, where a Wilson interval over 200 "episodes" would be half as wide
    games = [rng.random() < 0.6 for _ in range(50)]
    per_seed = {s: {g: solved for g, solved in enumerate(games)} for s in range(4)}
    glo, ghi = stats.bootstrap_mean(stats.game_rates(per_seed))
    wlo, whi = stats.wilson(4 * sum(games), 200)
    assert (ghi - glo) > 1.6 * (whi - wlo)


def test_min_detectable_difference_has_its_power():
    """Simulated paired designs whose true difference is the MDE the formula gives for their own
    spread: the sign-flip test finds it at p < 0.05 in about 80% of them."""
    rng = random.Random(3)
    n, seeds, p_minus = 60, 3, 0.2
    delta = 0.1
    for _ in range(50):  # the difference that equals the MDE of its own per-game spread (a fixed point)
        var_game = (p_minus + delta + p_minus - delta ** 2) / seeds
        delta = (stats.Z_975 + stats.Z_80) * var_game ** 0.5 / n ** 0.5
    hits, trials = 0, 400
    mdes = []
    for _ in range(trials):
        diffs = []
        for _ in range(n):
            d = 0
            for _ in range(seeds):
                u = rng.random()
                d += 1 if u < p_minus + delta else -1 if u > 1 - p_minus else 0
            diffs.append(d)
        mdes.append(stats.min_detectable([x / seeds for x in diffs]))
        hits += stats.sign_flip_test(diffs) < 0.05
    assert sum(mdes) / trials == pytest.approx(delta, rel=0.05)  # the formula, read off the data
    assert 0.72 < hits / trials < 0.88
    per_game = [x / seeds for x in diffs]
    assert stats.min_detectable(per_game * 4) == pytest.approx(stats.min_detectable(per_game) / 2, rel=0.02)  # 1/sqrt(games)


def test_report_game_comparison():
    a = {0: {f"g{i}": i < 30 for i in range(50)}, 1: {f"g{i}": i < 28 for i in range(50)}}
    b = {0: {f"g{i}": i < 20 for i in range(50)}, 1: {f"g{i}": i < 22 for i in range(50)}}
    c = report.game_comparison(a, b)
    assert c["seeds"] == 2 and c["games"] == 50 and c["better"] == 10 and c["worse"] == 0
    assert c["diff"] == pytest.approx((58 - 42) / 100)
    assert c["p"] == pytest.approx(stats.sign_flip_test(stats.game_diffs(a, b)), abs=1e-4) and c["p"] < 0.01
    assert c["ci95"][0] > 0 and c["mde"] > 0


def test_game_interval_never_collapses_at_the_bounds():
    # 0 of 20 games: every bootstrap resample is 0, the interval would be [0, 0]; Wilson's stands
    assert stats.game_interval([0.0] * 20) == stats.wilson(0, 20)
    assert stats.game_interval([1.0] * 20) == stats.wilson(20, 20)
    rng = random.Random(4)
    rates = [rng.choice([0, 0.25, 0.5, 1]) for _ in range(60)]
    lo, hi = stats.game_interval(rates)
    b_lo, b_hi = stats.bootstrap_mean(rates)
    assert lo <= b_lo and hi >= b_hi and lo < sum(rates) / 60 < hi
