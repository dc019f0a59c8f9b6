"""evaluate.py: well-formed outputs, determinism, resume, one-line errors; the results table."""
import json

import pytest

import common
import evaluate
import stats
from conftest import run_script

ARGS = ["--model", "tiny-random", "--dtype", "fp32", "--env", "twx-coin", "--split", "test", "ood",
        "--episodes", "4", "--batch", "3", "--max-steps", "3"]


def test_writes_episodes_and_summary_and_reruns_identically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    evaluate.main(ARGS + ["--out", str(a)])
    evaluate.main(ARGS + ["--out", str(b)])
    for name in ("test.jsonl", "ood.jsonl", "summary.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    eps = common.read_jsonl(a / "test.jsonl")
    assert len(eps) == 4 and len({e["task_id"] for e in eps}) == 4
    for e in eps:
        assert set(e) >= {"task_id", "success", "score", "steps", "invalid", "trajectory"}
        assert e["steps"] == len(e["trajectory"]) <= 3
        assert e["invalid"] == sum(not s["valid"] for s in e["trajectory"])
        assert all(set(s) >= {"answer", "action", "valid", "observation"} for s in e["trajectory"])
    summary = {r["split"]: r for r in common.read_jsonl(a / "summary.jsonl")}
    assert summary["test"]["n"] == 4 and summary["test"]["successes"] == sum(e["success"] for e in eps)
    assert json.loads((a / "args.json").read_text())["episodes"] == 4


def test_interrupted_run_resumes_without_duplicates(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    evaluate.main(ARGS + ["--out", str(full)])
    evaluate.main(ARGS[:-6] + ["--episodes", "2", "--batch", "3", "--max-steps", "3", "--out", str(cut)])
    # a torn line, as left by a kill in the middle of a write
    with open(cut / "test.jsonl", "a") as f:
        f.write('{"task_id": "twx-coin/test/80')
    evaluate.main(ARGS + ["--out", str(cut)])
    for split in ("test", "ood"):
        got = common.read_jsonl(cut / f"{split}.jsonl")
        assert sorted(e["task_id"] for e in got) == sorted(e["task_id"] for e in common.read_jsonl(full / f"{split}.jsonl"))


def test_refuses_to_resume_another_models_folder(tmp_path):
    evaluate.main(ARGS + ["--out", str(tmp_path)])
    with pytest.raises(common.UserError, match="another setting"):
        evaluate.main([a if a != "tiny-random" else "tiny-random-32x1" for a in ARGS] + ["--out", str(tmp_path)])
    # the same command in another dtype (bf16 vs fp32 greedy episodes can differ) is another setting too
    with pytest.raises(common.UserError, match="dtype_resolved"):
        evaluate.main([a if a != "fp32" else "bf16" for a in ARGS] + ["--out", str(tmp_path)])
    assert json.loads((tmp_path / "args.json").read_text())["dtype_resolved"] == "fp32"


def test_bad_input_is_one_line_and_nonzero(tmp_path):
    for args, text in [(["--env", "nope", "--out", tmp_path], "unknown env"),
                       (["--split", "validation", "--out", tmp_path, "--model", "tiny-random"], "unknown split")]:
        r = run_script("evaluate.py", *args)
        assert r.returncode == 2 and text in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    r = run_script("train.py", "--model", "tiny-random", "--data", bad, "--out", tmp_path / "ck")
    assert r.returncode == 2 and "bad.jsonl:2: malformed JSON" in r.stderr and not (tmp_path / "ck").exists()


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
    rows = {r["method"]: r for r in evaluate.results_table(tmp_path)}
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
    sr = evaluate.results_table(tmp_path)[-1]
    assert sr["method"] == "sr" and sr["ci95"] == pytest.approx((hi - lo) / 2, abs=1e-4) and sr["ci95"] > 0.25
    assert evaluate.pvalue(0.00049) == "< 0.01" and evaluate.pvalue(0.0703) == "0.07"
    md = evaluate.write_table(tmp_path, list(rows.values()))
    assert "| iwm | test | 2 | 8 | 62.5 ± " in md and "+25.0" in md and "+3 / -1 (p 0.62)" in md and (tmp_path / "results.jsonl").exists()
    # against another method (evaluate.py --table RUN --reference iwm): il is now the one compared
    rows = {r["method"]: r for r in evaluate.results_table(tmp_path, reference="iwm")}
    assert rows["il"]["gain_vs_il"] == pytest.approx(-0.25) and rows["il"]["reference"] == "iwm"
    assert rows["il"]["paired_vs_il"] == {"wins": 1, "losses": 3, "p": 0.625} and "gain_vs_il" not in rows["iwm"]
    md = evaluate.write_table(tmp_path, list(rows.values()), reference="iwm")
    assert "gain vs iwm" in md and "| il | test | 2 | 8 | 37.5 ± " in md and (tmp_path / "results-vs-iwm.md").exists()
    assert "gain vs IL" in (tmp_path / "results.md").read_text()  # the IL table is left as it was
    with pytest.raises(common.UserError, match="reference method 'ilm'"):
        evaluate.results_table(tmp_path, reference="ilm")


def test_a_seeds_arms_share_one_dtype(tmp_path):
    """run.sh asks before it trains an arm: seed 0's evaluations ran in bf16, so this machine must give
    bf16 for seed 0 too; another seed is free. The table says which dtype each method ran in."""
    for method, seed, dtype in [("il", 0, "bf16"), ("iwm", 0, "bf16"), ("il", 1, "fp32")]:
        d = tmp_path / "eval" / method / f"s{seed}"
        d.mkdir(parents=True)
        common.write_jsonl(d / "test.jsonl", [{"task_id": "t0", "success": True}, {"task_id": "t1", "success": False}])
        common.write_jsonl(d / "summary.jsonl", [{"model": method, "split": "test", "mode": "raw"}])
        (d / "args.json").write_text(json.dumps({"dtype": "auto", "dtype_resolved": dtype}))
    assert evaluate.seed_dtypes(tmp_path, 0) == {"il": "bf16", "iwm": "bf16"}
    with pytest.raises(common.UserError, match=r"eval/il/s0: seed 0's arms ran in bf16, and --dtype fp32 is fp32"):
        evaluate.check_seed_dtype(str(tmp_path), "0", "fp32")
    evaluate.check_seed_dtype(str(tmp_path), "0", "bf16")   # the same dtype: nothing to say
    with pytest.raises(common.UserError, match="seed 1's arms ran in fp32"):
        evaluate.check_seed_dtype(str(tmp_path), "1", "bf16")
    evaluate.check_seed_dtype(str(tmp_path), "2", "fp32")   # a new seed
    rows = evaluate.results_table(tmp_path)
    assert {r["method"]: r["dtype"] for r in rows} == {"il": "bf16, fp32", "iwm": "bf16"}
    assert "dtypes differ: il bf16, fp32; iwm bf16" in evaluate.write_table(tmp_path, rows)
    (tmp_path / "eval" / "il" / "s1" / "args.json").write_text(json.dumps({"dtype_resolved": "bf16"}))
    assert "\ndtype: bf16 (every evaluation)\n" in evaluate.write_table(tmp_path, evaluate.results_table(tmp_path))


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
    rows = evaluate.failures(tmp_path)
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
    assert evaluate.failures(tmp_path)[0]["kinds"] == {"other loss": 1}
    # a dev reading (budget.py's checkpoints) is a row of its own after test and ood, never a results row
    d = tmp_path / "dev" / "step-00010"
    d.mkdir(parents=True)
    common.write_jsonl(d / "dev.jsonl", [{"task_id": "d0", "success": False, "trajectory": lost}])
    common.write_jsonl(d / "summary.jsonl", [{"model": "il@10", "split": "dev", "mode": "raw"}])
    (d / "args.json").write_text(json.dumps({"env": "twx-cooking", "max_steps": 4}))
    rows = evaluate.failures(tmp_path)
    assert [(r["method"], r["split"], r["kinds"], r["choices"]) for r in rows][-1] == (
        "step-00010", "dev", {"wrong appliance": 1}, [("fry", "grill")])
    assert "step-00010" not in {r["method"] for r in evaluate.results_table(tmp_path)}
    (tmp_path / "eval" / "il" / "s0" / "args.json").write_text("{not json")
    with pytest.raises(common.UserError, match=r"eval/il/s0/args.json: not JSON"):
        evaluate.failures(tmp_path)
