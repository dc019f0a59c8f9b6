"""study.sh: a study over seeds and sittings: what is left per seed, one dtype per seed (refused before
anything trains), and two streams of one thread each that prepare the shared stages once."""
import json
import os
import subprocess

import common
from conftest import ROOT


def _evaluation(run, arm, seed, dtype, splits=("test",)):
    d = run / "eval" / arm / f"s{seed}"
    d.mkdir(parents=True)
    common.write_jsonl(d / "summary.jsonl", [{"model": arm, "split": s, "mode": "raw"} for s in splits])
    (d / "args.json").write_text(json.dumps({"dtype_resolved": dtype}))


def test_left_says_per_seed_what_is_still_to_run_and_in_which_dtype(tmp_path):
    run = tmp_path / "study"
    for arm, seed, dtype in [("il", 0, "bf16"), ("iwm", 0, "bf16"), ("il", 1, "fp32")]:
        _evaluation(run, arm, seed, dtype)
    (run / "eval" / "sr" / "s1").mkdir(parents=True)  # begun, not written: still to do
    env = {**os.environ, "PRESET": "study", "RUN": str(run), "SEEDS": "0 1 2", "ARMS": "il iwm sr", "DTYPE": "fp32",
           "SPLITS": "test"}
    r = subprocess.run(["bash", "study.sh", "left"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[-4:] == [
        "left: this machine's dtype (DTYPE fp32): fp32",
        "left: seed 0: sr (its evaluations ran in: bf16)",
        "left: seed 1: iwm sr (its evaluations ran in: fp32)",
        "left: seed 2: il iwm sr (its evaluations ran in: nothing yet)"], r.stdout[-2000:]
    # read on test only: asked for both splits, the arms are still to do (evaluate.py resumes, adding ood)
    r = subprocess.run(["bash", "study.sh", "left"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**env, "SEEDS": "0", "SPLITS": "test ood"})
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "left: seed 0: il iwm sr (its evaluations ran in: bf16)", \
        r.stdout[-2000:] + r.stderr[-2000:]
    assert sorted(p.name for p in run.iterdir()) == ["eval"]  # nothing written
    r = subprocess.run(["bash", "study.sh", "lft"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and "unknown command lft" in r.stderr
    r = subprocess.run(["bash", "study.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k not in ("PRESET", "STUDY", "STUDY2", "SCARCE")})
    assert r.returncode == 2 and "name the study" in r.stderr


def test_a_seed_begun_in_one_dtype_is_refused_in_another_before_anything_runs(tmp_path):
    run = tmp_path / "study"
    _evaluation(run, "il", 1, "bf16")
    env = {**os.environ, "PRESET": "study", "SMOKE": "1", "RUN": str(run), "SEEDS": "1", "DTYPE": "fp32"}
    r = subprocess.run(["bash", "study.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {run}/eval/il/s1: seed 1's arms ran in bf16, and --dtype fp32 is fp32 on this machine; one seed's arms "
        "share a dtype: resume it where bf16 is what auto gives, set DTYPE=bf16 (can be many times slower here: "
        "docs/benchmarks.md), or go on with another seed"], r.stderr[-2000:]
    assert sorted(p.name for p in run.iterdir()) == ["eval"]  # no stage ran


def test_two_streams_prepare_once_and_share_the_seeds(tmp_path):
    """STREAMS=2: stages 1-4 and the Prompt rows once, then seeds 0 and 1 in two run.sh processes of one
    thread each, side by side; the table has both seeds; the probe reads the study's first seed only
    (each seed's run.sh has SEEDS=<that seed>)."""
    run = tmp_path / "two"
    env = {**os.environ, "SMOKE": "1", "PRESET": "study", "RUN": str(run), "SEEDS": "0 1", "ARMS": "il",
           "RL": "0", "MAPPED": "0", "PROMPT_MODES": "mapped", "STREAMS": "2", "BUDGET": "epochs",
           "PROBE": "1", "PROBE_TASKS": "2"}
    r = subprocess.run(["bash", "study.sh"], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {(x["method"], x["split"]): x for x in common.read_jsonl(run / "results.jsonl")}
    assert rows["il", "test"]["seeds"] == [0, 1] and ("prompt-mapped", "test") in rows
    times = (run / "stage_times.tsv").read_text()
    assert times.count("\ncollect\t") == 1 and times.count("train il-s0") == times.count("train il-s1") == 1
    assert times.count("eval prompt-mapped/s0") == 1  # read once, by the preparing run
    blocks = (run / "run_settings.txt").read_text().split("\n# ")
    assert sum("THREADS=1" in b and "SEEDS=0\n" in b for b in blocks) == 1
    assert sum("THREADS=1" in b and "SEEDS=1\n" in b for b in blocks) == 1
    assert json.loads((run / "ckpt" / "il-s1" / "args.json").read_text())["threads"] == 1
    assert sorted(p.name for p in (run / "probe").iterdir()) == ["base", "il-s0"]
    assert (run / "probe" / "il-s0" / "probe.md").read_text().count("| il |") == 1
