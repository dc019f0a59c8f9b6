"""SMOKE=1 bash ablate.sh k|data: the settings share what they should, differ in what is ablated, and
end in one table and one figure."""
import json
import os
import subprocess

import common
import models
import report
from conftest import ROOT


def ablate(what, out):
    env = {**os.environ, "SMOKE": "1", "ABLATE_DIR": str(out)}
    r = subprocess.run(["bash", "ablate.sh", what], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return common.read_jsonl(out / "ablation.jsonl")


def test_ablation_over_k(tmp_path):
    out = tmp_path / "ak"
    rows = ablate("k", out)
    got = {(r["method"], r["split"], r["value"]) for r in rows}
    for m in ("il", "iwm", "sr", "prompt"):
        for split in ("test", "ood"):
            assert {(m, split, 1), (m, split, 2)} <= got, (m, split)
    # K changes the world-model data: expert + K uniform alternatives per state (when it has K)
    states = common.read_jsonl(out / "data" / "rollouts.jsonl")
    for k in (1, 2):
        expected = sum(1 + min(k, sum(a["source"] == "valid" for a in s["alternatives"])) for s in states)
        assert len(common.read_jsonl(out / f"k{k}" / "iwm.jsonl")) == expected
    # ... and not the imitation arm: trained once, in K=1, lent to K=2 by a file (no links anywhere),
    # the same numbers in both settings; the collection's files are hard links (regular files)
    assert (out / "k1" / "ckpt" / "il-s0").is_dir() and not (out / "k2" / "ckpt" / "il-s0").exists()
    assert json.loads((out / "k2" / "shared.json").read_text()) == {"run": "../k1", "methods": ["il", "prompt", "prompt-mapped"]}
    assert not [p for p in out.rglob("*") if p.is_symlink()]
    assert (out / "k2" / "expert.jsonl").stat().st_ino == (out / "data" / "expert.jsonl").stat().st_ino
    il = {(r["split"], r["value"]): r["success"] for r in rows if r["method"] == "il"}
    assert il[("test", 1)] == il[("test", 2)] and il[("ood", 1)] == il[("ood", 2)]
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG" and "score (mean)" in (out / "ablation.md").read_text()
    assert all(0 <= r["score"] <= 1 for r in rows)  # twx: the share of the recipe's points
    # each row says the dtype its episodes ran in; an args file from before dtype_resolved shows auto*
    assert {r["dtype"] for r in rows} == {models.resolved_dtype_name("auto")}
    args = out / "k1" / "eval" / "iwm" / "s0" / "args.json"
    old = json.loads(args.read_text())
    args.write_text(json.dumps({k: v for k, v in old.items() if k != "dtype_resolved"}))
    again = {(r["method"], r["value"], r["split"]): r["dtype"] for r in report.ablation(out)}
    assert again["iwm", 1, "test"] == "auto*" and again["iwm", 2, "test"] == models.resolved_dtype_name("auto")
    assert "auto*: evaluated with --dtype auto before" in (out / "ablation.md").read_text()


def test_ablation_over_the_fraction_of_expert_data(tmp_path):
    out = tmp_path / "ad"
    rows = ablate("data", out)
    full = common.read_jsonl(out / "data" / "expert.jsonl")
    tasks = list(dict.fromkeys(e["task_id"] for e in full))
    assert len(tasks) == 4
    half = common.read_jsonl(out / "tasks2" / "expert.jsonl")
    assert [e["task_id"] for e in half] == [e["task_id"] for e in full if e["task_id"] in tasks[:2]]
    assert json.loads((out / "tasks2" / "setting.json").read_text())["value"] == 0.5
    got = {(r["method"], r["split"], r["value"]) for r in rows}
    for m in ("il", "iwm", "sr"):
        assert {(m, "test", 0.5), (m, "test", 1.0), (m, "ood", 0.5), (m, "ood", 1.0)} <= got, m
    # fewer tasks, fewer imitation steps at the same epochs
    steps = {n: sum(1 for _ in open(out / f"tasks{n}" / "ckpt" / "il-s0" / "loss.jsonl")) for n in (2, 4)}
    assert steps[2] < steps[4]
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
