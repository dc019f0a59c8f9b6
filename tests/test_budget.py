"""budget.py: the rule that picks the imitation budget on dev, and the sweep end to end."""
import json
import os
import subprocess

import pytest

import budget
import common
import train
from conftest import ROOT, run_script


def pts(successes, n=50, every=10):
    return [{"step": every * (i + 1), "successes": k, "n": n} for i, k in enumerate(successes)]


def test_rule_picks_where_dev_success_stops_rising():
    # still rising: the last checkpoint, flagged so the sweep can be lengthened
    chosen, rising = budget.choose_budget(pts([5, 10, 15, 20, 25]))
    assert chosen["step"] == 50 and rising
    # flat: the first (the cheapest budget that reaches the plateau)
    # a plateau that reaches the last point (the study's sweep: 13, 27, 27, 36, 36, 36 of 50) is not rising
    chosen, rising = budget.choose_budget(pts([13, 27, 27, 36, 36, 36]))
    assert chosen["step"] == 40 and not rising
    chosen, rising = budget.choose_budget(pts([15, 15, 15, 15]))
    assert chosen["step"] == 10 and not rising
    # rises, then plateaus within noise: best 25/50 (SE = sqrt(.5 * .5 / 50) = 0.0707), so >= 0.4293:
    # 22/50 = 0.44 qualifies, 21/50 = 0.42 does not
    chosen, rising = budget.choose_budget(pts([5, 21, 22, 25, 24]))
    assert chosen["step"] == 30 and not rising
    # peaks then falls (over-training): the peak region, not the end
    chosen, rising = budget.choose_budget(pts([5, 30, 20, 10]))
    assert chosen["step"] == 20 and not rising
    # unordered input is read in step order
    chosen, _ = budget.choose_budget(list(reversed(pts([5, 30, 20, 10]))))
    assert chosen["step"] == 20
    # all zero: nothing to gain from more steps than the first
    assert budget.choose_budget(pts([0, 0, 0]))[0]["step"] == 10
    with pytest.raises(common.UserError):
        budget.choose_budget([])


def test_sweep_saves_checkpoints_and_writes_the_budget(tmp_path):
    data = tmp_path / "expert.jsonl"
    common.write_jsonl(data, [{"messages": [{"role": "user", "content": f"state {i}"},
                                            {"role": "assistant", "content": f"Action: take {i % 3}"}]}
                              for i in range(12)])
    ck = tmp_path / "ckpt" / "sweep"
    train.main(["--data", str(data), "--model", "tiny-random", "--dtype", "fp32", "--batch", "4", "--steps", "7",
                "--save-every", "3", "--out", str(ck)])
    saved = sorted(d.name for d in (tmp_path / "ckpt" / "sweep-steps").iterdir())
    assert saved == ["step-00003", "step-00006"]  # the final step 7 is the checkpoint itself
    assert [json.loads(x)["step"] for x in (tmp_path / "ckpt" / "sweep-steps" / "step-00003" / "loss.jsonl").open()] == [1, 2, 3]
    assert [s for s, _ in budget.checkpoints(ck)] == [3, 6, 7]
    r = run_script("budget.py", "--ckpt", ck, "--env", "twx-cooking", "--episodes", "2", "--batch", "2",
                   "--max-steps", "2", "--dtype", "fp32", "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    b = json.loads((tmp_path / "ckpt" / "budget.json").read_text())
    assert [c["step"] for c in b["curve"]] == [3, 6, 7] and all(c["n"] == 2 for c in b["curve"])
    assert b["steps"] == budget.choose_budget(b["curve"])[0]["step"]
    assert b["steps_per_epoch"] == 3 and b["epochs"] == round(b["steps"] / 3, 4)
    assert (tmp_path / "ckpt" / "budget.png").exists()
    dev = common.read_jsonl(tmp_path / "ckpt" / "sweep-dev" / "step-00003" / "dev.jsonl")
    assert [e["task_id"] for e in dev] == ["twx-cooking/dev/700", "twx-cooking/dev/701"]  # dev, never test
    r = run_script("budget.py", "--ckpt", tmp_path / "nothing")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "loss.jsonl" in r.stderr


def test_a_given_budget_is_written_the_same_way(tmp_path):
    # run.sh's default (BUDGET=epochs): the file every arm reads, with train.py's own step count
    data = tmp_path / "expert.jsonl"
    common.write_jsonl(data, [{"messages": []}] * 19)
    b = budget.main(["--fixed-epochs", "2", "--data", str(data), "--batch-size", "8"])
    assert (b["steps"], b["steps_per_epoch"], b["epochs"]) == (6, 3, 2.0)  # ceil(19 / 8) = 3 per epoch
    assert json.loads((tmp_path / "budget.json").read_text()) == b and b["rule"].startswith("fixed")


def test_run_sh_reads_the_budget_back_through_a_check(tmp_path):
    """run.sh trusts no file it wrote: a budget of 0 steps, a torn file or one without `steps` stops it
    with one line naming the file (never the default 2 epochs instead), before any training."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "collect_stats.json").write_text("{}")  # stage 1 done
    common.write_jsonl(run / "expert.jsonl", [{"messages": []}])
    for text, says in [('{"steps": 0, "epochs": 0}', "steps must be a whole number >= 1, got 0"),
                       ('{"steps": 12, "epo', "not a budget file"),
                       ('{"epochs": 2}', "not a budget file (KeyError"),
                       ('{"steps": 3.5, "epochs": 1}', "steps must be a whole number >= 1, got 3.5")]:
        (run / "budget.json").write_text(text)
        r = subprocess.run(["bash", "run.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "SMOKE": "1", "RUN": str(run)})
        assert r.returncode == 2, r.stderr[-1000:]
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {run / 'budget.json'}: ") and says in last, last
        assert not (run / "ckpt").exists() and not (run / "iwm.jsonl").exists()
    (run / "budget.json").write_text(json.dumps({"steps": 7, "epochs": 1.75}))
    assert budget.read_budget(run / "budget.json") == (7, 1.75)
