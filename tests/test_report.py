"""report.py: the results table (means, gains, paired tests), the one-dtype guard, the failures table."""
import json

import pytest

import common
import envs
import report
import stats
from conftest import run_script


def test_results_table_means_gains_and_pairs(tmp_path):
    def put(method, seed, outcomes, scores=None):
        d = tmp_path / "eval" / method / f"s{seed}"
        d.mkdir(parents=True)
        eps = [{"task_id": f"t{i}", "success": s} for i, s in enumerate(outcomes)]
        for e, sc in zip(eps, scores or []):
            e["score"] = sc
        common.write_jsonl(d / "test.jsonl", eps)
        common.write_jsonl(d / "summary.jsonl", [{"model": method, "split": "test", "mode": "raw"}])
    put("il", 0, [1, 0, 0, 0])   # 0.25
    put("il", 1, [1, 1, 0, 0])   # 0.50
    put("iwm", 0, [1, 1, 0, 0], [1, 1, 0.5, 0])  # 0.50: +1 / -0 against il s0
    put("iwm", 1, [0, 1, 1, 1], [0.25, 1, 1, 1])  # 0.75: +2 / -1 against il s1
    rows = {r["method"]: r for r in report.results_table(tmp_path)}
    assert rows["il"]["success"] == pytest.approx(0.375) and "gain_vs_il" not in rows["il"]
    assert rows["iwm"]["success"] == pytest.approx(0.625)
    assert rows["iwm"]["gain_vs_il"] == pytest.approx(0.25)
    assert rows["iwm"]["score"] == pytest.approx(5.75 / 8, abs=1e-4) and "score" not in rows["il"]  # pooled episodes
    # sign test on the 4 discordant episodes: 2 x (C(4,0) + C(4,1)) / 2^4 = 0.625
    assert rows["iwm"]["paired_vs_il"] == {"wins": 3, "losses": 1, "p": 0.625}
    # two seeds: t(1) = 12.706 times sd / sqrt(2); sd of (0.5, 0.75) = 0.17678
    assert rows["iwm"]["ci95"] == pytest.approx(12.706 * 0.17678 / 2 ** 0.5, abs=1e-3)
    # seeds that agree exactly (1 of 4 each): the t-interval is 0, the pooled Wilson interval stands
    put("sr", 0, [0, 0, 0, 1])
    put("sr", 1, [0, 0, 1, 0])
    lo, hi = stats.wilson(2, 8)  # 0.0715 - 0.5907
    sr = report.results_table(tmp_path)[-1]
    assert sr["method"] == "sr" and sr["ci95"] == pytest.approx((hi - lo) / 2, abs=1e-4) and sr["ci95"] > 0.25
    assert report.pvalue(0.00049) == "< 0.01" and report.pvalue(0.0703) == "0.07"
    # the game as the unit: games t0-t3 solved over both seeds, iwm - il = (1-2, 2-1, 1-0, 1-0): +3 / -1 games
    g = rows["iwm"]["games_vs_il"]
    assert (g["seeds"], g["games"], g["better"], g["worse"]) == (2, 4, 3, 1)
    assert g["diff"] == pytest.approx(0.25) and g["p"] == pytest.approx(stats.sign_flip_test([-1, 1, 1, 1]))
    assert rows["iwm"]["games"] == 4 and rows["iwm"]["game_ci95"][0] <= 0.625 <= rows["iwm"]["game_ci95"][1]
    md = report.write_table(tmp_path, list(rows.values()))
    assert "| iwm | test | 2 | 4 | 5/8 | 62.5 [" in md and "| +25.0 [" in md and f"| +3 / -1 | {report.pvalue(g['p'])} |" in md
    assert (tmp_path / "results.jsonl").exists()
    # the figure beside the table: one bar per method and split, drawn in the table's order
    assert report.plot_results(list(rows.values()), tmp_path / "fig.png", "t") == ["il/test", "iwm/test"]
    assert (tmp_path / "results.png").stat().st_size > 5000
    # against another method (report.py --table RUN --reference iwm): il is now the one compared
    rows = {r["method"]: r for r in report.results_table(tmp_path, reference="iwm")}
    assert rows["il"]["gain_vs_il"] == pytest.approx(-0.25) and rows["il"]["reference"] == "iwm"
    assert rows["il"]["paired_vs_il"] == {"wins": 1, "losses": 3, "p": 0.625} and "gain_vs_il" not in rows["iwm"]
    md = report.write_table(tmp_path, list(rows.values()), reference="iwm")
    assert "vs iwm, points" in md and "| il | test | 2 | 4 | 3/8 | 37.5 [" in md and (tmp_path / "results-vs-iwm.md").exists()
    assert "vs IL, points" in (tmp_path / "results.md").read_text()  # the IL table is left as it was
    with pytest.raises(common.UserError, match="reference method 'ilm'"):
        report.results_table(tmp_path, reference="ilm")


def test_a_seeds_arms_share_one_dtype(tmp_path):
    """run.sh asks before it trains an arm: seed 0's evaluations ran in bf16, so this machine must give
    bf16 for seed 0 too; another seed is free. The table says which dtype each method ran in."""
    for method, seed, dtype in [("il", 0, "bf16"), ("iwm", 0, "bf16"), ("il", 1, "fp32")]:
        d = tmp_path / "eval" / method / f"s{seed}"
        d.mkdir(parents=True)
        common.write_jsonl(d / "test.jsonl", [{"task_id": "t0", "success": True}, {"task_id": "t1", "success": False}])
        common.write_jsonl(d / "summary.jsonl", [{"model": method, "split": "test", "mode": "raw"}])
        (d / "args.json").write_text(json.dumps({"dtype": "auto", "dtype_resolved": dtype}))
    assert report.seed_dtypes(tmp_path, 0) == {"il": "bf16", "iwm": "bf16"}
    with pytest.raises(common.UserError, match=r"eval/il/s0: seed 0's arms ran in bf16, and --dtype fp32 is fp32"):
        report.check_seed_dtype(str(tmp_path), "0", "fp32")
    report.check_seed_dtype(str(tmp_path), "0", "bf16")   # the same dtype: nothing to say
    with pytest.raises(common.UserError, match="seed 1's arms ran in fp32"):
        report.check_seed_dtype(str(tmp_path), "1", "bf16")
    report.check_seed_dtype(str(tmp_path), "2", "fp32")   # a new seed
    rows = report.results_table(tmp_path)
    assert {r["method"]: r["dtype"] for r in rows} == {"il": "bf16, fp32", "iwm": "bf16"}
    assert "dtypes differ: il bf16, fp32; iwm bf16" in report.write_table(tmp_path, rows)
    (tmp_path / "eval" / "il" / "s1" / "args.json").write_text(json.dumps({"dtype_resolved": "bf16"}))
    assert "\ndtype: bf16 (every evaluation)\n" in report.write_table(tmp_path, report.results_table(tmp_path))


def test_failures_table_counts_each_unsolved_episode_by_how_it_ended(tmp_path):
    recipe = {"action": "read cookbook", "observation": "Ingredients: carrot Directions: fry the carrot prepare meal"}
    lost = [recipe, {"action": "take carrot", "observation": "You take the carrot."},
            {"action": "cook carrot in toaster", "observation": "You grill the carrot with the toaster."}]
    slow = [{"action": "look around", "observation": "..."}] * 4  # the step limit below is 4
    won = lost[:2] + [{"action": "cook carrot with stove", "observation": "You fry the carrot with the stove."}]
    for method, seed, mode, eps in [
            ("il", 0, "raw", [(True, won), (False, lost), (False, slow)]),
            ("il", 1, "raw", [(False, lost), (False, lost[:2] + [{"action": "dice carrot", "observation": "You dice the carrot."}])]),
            ("prompt-mapped", 0, "mapped", [(False, slow)])]:
        d = tmp_path / "eval" / method / f"s{seed}"
        d.mkdir(parents=True)
        name = "test.jsonl" if mode == "raw" else "test-mapped.jsonl"
        common.write_jsonl(d / name, [{"task_id": f"t{i}", "success": ok, "trajectory": t} for i, (ok, t) in enumerate(eps)])
        common.write_jsonl(d / "summary.jsonl", [{"model": method, "split": "test", "mode": mode}])
        (d / "args.json").write_text(json.dumps({"env": "twx-cooking", "max_steps": 4}))
    rows = report.failures(tmp_path)
    assert [(r["method"], r["episodes"], r["solved"]) for r in rows] == [("prompt-mapped", 1, 0), ("il", 5, 1)]
    assert rows[1]["kinds"] == {"wrong appliance": 2, "step limit": 1, "wrong cut": 1}
    assert rows[1]["details"] == {"fry -> grill": 2} and rows[0]["details"] == {}  # the recipe fries, the agent grilled
    md = (tmp_path / "failures.md").read_text()
    assert md.splitlines()[0] == "| method | split | episodes | solved | step limit | wrong appliance | wrong cut |"
    assert "| il | test | 5 | 1 | 1 | 2 | 1 |" in md and "| prompt-mapped | test | 1 | 0 | 1 | 0 | 0 |" in md
    confusion = md.split("Wrong appliance, the recipe's verb -> the one the agent used", 1)[1].splitlines()
    assert "| method | split | episodes | solved | fry -> grill |" in confusion and "| il | test | 5 | 1 | 2 |" in confusion
    # every cook move, the solved game's too: one of il's three used the recipe's appliance (the stove)
    assert rows[1]["choices"] == [("fry", "fry"), ("fry", "grill"), ("fry", "grill")] and rows[0]["choices"] == []
    moves = md.split("Every cook move, solved games included", 1)[1].splitlines()
    assert "| method | split | episodes | solved | cook moves | right | grill (toaster) | fry (stove) | roast (oven) |" in moves
    assert "| il | test | 5 | 1 | 3 | 1 (33%) | 0/0 | 1/3 | 0/0 |" in moves
    assert "| prompt-mapped | test | 1 | 0 | 0 | 0 | 0/0 | 0/0 | 0/0 |" in moves
    # the env's own step limit where the evaluation used its default (--max-steps 0): 15 for twx-cooking
    (tmp_path / "eval" / "prompt-mapped" / "s0" / "args.json").write_text(json.dumps({"env": "twx-cooking", "max_steps": 0}))
    assert report.failures(tmp_path)[0]["kinds"] == {"other loss": 1}
    # a dev reading (budget.py's checkpoints) is a row of its own after test and ood, never a results row
    d = tmp_path / "dev" / "step-00010"
    d.mkdir(parents=True)
    common.write_jsonl(d / "dev.jsonl", [{"task_id": "d0", "success": False, "trajectory": lost}])
    common.write_jsonl(d / "summary.jsonl", [{"model": "il@10", "split": "dev", "mode": "raw"}])
    (d / "args.json").write_text(json.dumps({"env": "twx-cooking", "max_steps": 4}))
    rows = report.failures(tmp_path)
    assert [(r["method"], r["split"], r["kinds"], r["choices"]) for r in rows][-1] == (
        "step-00010", "dev", {"wrong appliance": 1}, [("fry", "grill")])
    assert "step-00010" not in {r["method"] for r in report.results_table(tmp_path)}
    # --seeds: only those training seeds' evaluations (no dev rows), in a file of their own
    before = (tmp_path / "failures.md").read_text()
    rows = report.failures(tmp_path, seeds=[1])
    assert [(r["method"], r["split"], r["episodes"], r["solved"], r["kinds"]) for r in rows] == [
        ("il", "test", 2, 0, {"wrong appliance": 1, "wrong cut": 1})]
    md = (tmp_path / "failures-s1.md").read_text()
    assert md.startswith("Training seeds 1 only") and "| il | test | 2 | 0 | 1 | 1 |" in md and "step-00010" not in md
    assert (tmp_path / "failures.md").read_text() == before  # the pooled file is left as it was
    assert report.failures_name([2, 0, 1, 0]) == "failures-s0-1-2.md"
    with pytest.raises(common.UserError, match=r"no evaluation summaries found for seeds 7"):
        report.failures(tmp_path, seeds=[7])
    (tmp_path / "eval" / "il" / "s0" / "args.json").write_text("{not json")
    with pytest.raises(common.UserError, match=r"eval/il/s0/args.json: not JSON"):
        report.failures(tmp_path)


def test_the_command_line_writes_the_table_and_refuses_bad_input_in_one_line(tmp_path):
    d = tmp_path / "eval" / "il" / "s0"
    d.mkdir(parents=True)
    common.write_jsonl(d / "test.jsonl", [{"task_id": "t0", "success": True}, {"task_id": "t1", "success": False}])
    common.write_jsonl(d / "summary.jsonl", [{"model": "il", "split": "test", "mode": "raw"}])
    r = run_script("report.py", "--table", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| il | test | 1 | 2 | 1/2 | 50.0 [" in (tmp_path / "results.md").read_text()
    for args, text in [((), "give one of --table RUN"),
                       (("--table", tmp_path, "--failures", tmp_path), "give one of --table RUN"),
                       (("--table", tmp_path, "--seeds", "0"), "--seeds goes with --failures, --left or --check-dtype"),
                       (("--failures", tmp_path, "--seeds", "-1"), "argument --seeds: must be >= 0, got -1"),
                       (("--table", tmp_path / "nothing"), "nothing/eval: no evaluation summaries found")]:
        r = run_script("report.py", *args)
        assert r.returncode == 2 and text in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) <= 2, r.stderr  # argparse: its usage line, then the error
    assert not (tmp_path / "nothing").exists()


def test_a_new_env_brings_its_own_failure_reading(tmp_path, monkeypatch):
    """Adding an env is one file and one registry line: report.py --failures reads its episodes through
    the env class's FailureReading (here a stand-in env whose losses are read from the last move), and
    an env without one gets the step limit or a loss."""
    class KeyReading(envs.FailureReading):
        detail_title, detail_caption = "door -> key", "Doors tried, the key held:"
        choices_title, choices_caption = "doors", "Every door:"

        def why_failed(self, trajectory, max_steps):
            return "opened the wrong door" if trajectory[-1]["action"].startswith("open") else "other"

        def detail(self, trajectory):
            return trajectory[-1]["action"].split()[-1] + " -> red"

        def choices(self, trajectory):
            return [("red", s["action"].split()[-1]) for s in trajectory if s["action"].startswith("open")]

        def choice_cells(self, choices):
            return {"doors": str(len(choices)), "right": str(sum(a == b for a, b in choices))}

    class KeyEnv(envs.TextEnv):
        max_steps = 7

        @classmethod
        def failure_reading(cls, name):
            return KeyReading()

    monkeypatch.setitem(envs.CLASSES, "keys", (__name__, "KeyEnv"))
    monkeypatch.setitem(globals(), "KeyEnv", KeyEnv)
    d = tmp_path / "eval" / "il" / "s0"
    d.mkdir(parents=True)
    eps = [(False, [{"action": "open blue", "observation": "Locked."}]),
           (True, [{"action": "open red", "observation": "You win."}]),
           (False, [{"action": "wait", "observation": "..."}] * 7)]
    common.write_jsonl(d / "test.jsonl", [{"task_id": f"t{i}", "success": ok, "trajectory": t} for i, (ok, t) in enumerate(eps)])
    common.write_jsonl(d / "summary.jsonl", [{"model": "il", "split": "test", "mode": "raw"}])
    (d / "args.json").write_text(json.dumps({"env": "keys", "max_steps": 0}))
    rows = report.failures(tmp_path)
    assert envs.default_max_steps("keys") == 7
    assert rows[0]["kinds"] == {"opened the wrong door": 1, "other": 1}  # the env's reading, not the step limit
    assert rows[0]["details"] == {"blue -> red": 1, "wait -> red": 1}
    md = (tmp_path / "failures.md").read_text()
    assert "Doors tried, the key held:" in md and "| il | test | 3 | 1 | 2 | 1 |" in md.split("Every door:")[1]
    monkeypatch.setattr(KeyEnv, "failure_reading", classmethod(lambda cls, name: envs.FailureReading()))
    assert report.failures(tmp_path)[0]["kinds"] == {"step limit": 1, "lost (the game ended it)": 1}


def test_the_figure_shows_success_by_arm_and_the_loss_curves_of_the_first_seed(tmp_path):
    for name, seed in (("il", 0), ("iwm-stage1", 0), ("iwm", 0), ("il", 1)):
        d = tmp_path / "ckpt" / f"{name}-s{seed}"
        d.mkdir(parents=True)
        common.write_jsonl(d / "loss.jsonl", [{"step": i + 1, "loss": 2.0 / (i + 1 + seed)} for i in range(5)])
    (tmp_path / "ckpt" / "sweep").mkdir()
    common.write_jsonl(tmp_path / "ckpt" / "sweep" / "loss.jsonl", [{"step": 1, "loss": 3.0}])
    curves = report.loss_curves(tmp_path)
    assert sorted(curves) == ["il-s0", "iwm-s0", "iwm-stage1-s0", "sweep"]  # seed 1 left out
    assert curves["il-s0"] == [2.0, 1.0, 2 / 3, 0.5, 0.4]
    for method in ("il", "iwm"):
        d = tmp_path / "eval" / method / "s0"
        d.mkdir(parents=True)
        common.write_jsonl(d / "test.jsonl", [{"task_id": f"t{i}", "success": i % 2 == 0} for i in range(4)])
        common.write_jsonl(d / "summary.jsonl", [{"model": method, "split": "test", "mode": "raw"}])
    report.write_table(tmp_path, report.results_table(tmp_path))
    with_curves = (tmp_path / "results.png").stat().st_size
    drawn = report.plot_results(report.results_table(tmp_path), tmp_path / "bars.png", "t")
    assert drawn == ["il/test", "iwm/test"] and with_curves > (tmp_path / "bars.png").stat().st_size
    assert report.loss_curves(tmp_path / "nothing") == {}
