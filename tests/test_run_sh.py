"""SMOKE=1 STUDY=1 bash run.sh: the study's protocol end to end (the budget swept on dev, every arm
trained with it, the tables against IL and IL-long), and a second run that skips the finished stages."""
import json
import os
import re
import shutil
import subprocess

from safetensors.torch import load_file

import common
import report
from conftest import ROOT

ARMS = ["il", "il-long", "iwm", "iwm-within", "iwm-mix", "sr"]
# SMOKE also evaluates every arm with mapped answers (MAPPED=1) and runs the RL stage
METHODS = ["prompt", "prompt-mapped", *ARMS, *(f"{a}-mapped" for a in ARMS), "rl-il", "rl-iwm", "rl-sr"]


def test_smoke_pipeline_end_to_end_and_rerun_skips(tmp_path):
    run = tmp_path / "smoke"
    env = {**os.environ, "SMOKE": "1", "STUDY": "1", "RUN": str(run)}
    r = subprocess.run(["bash", "run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in ("expert.jsonl", "rollouts.jsonl", "iwm.jsonl", "reflections.jsonl", "reflect.jsonl",
                 "collect_args.json", "collect_stats.json", "results.md", "results.jsonl"):
        assert (run / name).exists(), name
    for arm in ("il", "iwm-stage1", "iwm", "iwm-within", "il-long", "iwm-mix", "sr"):
        assert (run / "ckpt" / f"{arm}-s0" / "adapter_model.safetensors").exists(), arm
    rows = common.read_jsonl(run / "results.jsonl")
    assert sorted((x["method"], x["split"]) for x in rows) == sorted((m, s) for m in METHODS for s in ("test", "ood"))
    mapped = common.read_jsonl(run / "eval" / "il-mapped" / "s0" / "summary.jsonl")
    assert {r["mode"] for r in mapped} == {"mapped"}
    assert all(x["episodes"] == 3 for x in rows)
    vs = common.read_jsonl(run / "results-vs-il-long.jsonl")  # the paired tests against IL-long too
    assert {x["method"] for x in vs} == {x["method"] for x in rows}
    # how each unsolved episode ended: a row per method and split, and one per dev reading (the sweep's points)
    failed = [ln[2:].split(" | ")[:2] for ln in (run / "failures.md").read_text().split("\n\n")[0].splitlines()[2:]]
    assert sorted(m for m, split in failed if split != "dev") == sorted(m for m in METHODS for _ in ("test", "ood"))
    assert sorted(m for m, split in failed if split == "dev") == sorted(d.name for d in (run / "dev").iterdir())
    # the budget: chosen on dev from the sweep's checkpoints (every 2 steps), read by every arm
    budget = json.loads((run / "budget.json").read_text())
    sweep = sum(1 for _ in open(run / "ckpt" / "sweep" / "loss.jsonl"))
    assert [c["step"] for c in budget["curve"]] == list(range(2, sweep, 2)) + [sweep]
    assert all(c["n"] == 2 for c in budget["curve"])  # DEV_EPISODES, on the dev split
    assert common.read_jsonl(run / "dev" / "step-00002" / "dev.jsonl")[0]["task_id"].split("/")[1] == "dev"
    # budgets: il = the chosen steps; iwm's stage 2 = il; iwm-within's stage 2 + stage 1 = il;
    # il-long and iwm-mix = stage 1 + il
    steps = {a: sum(1 for _ in open(run / "ckpt" / f"{a}-s0" / "loss.jsonl"))
             for a in ("il", "iwm-stage1", "iwm", "iwm-within", "il-long", "iwm-mix")}
    assert steps["il"] == budget["steps"]
    assert steps["iwm"] == steps["il"] and steps["il-long"] == steps["il"] + steps["iwm-stage1"] == steps["iwm-mix"]
    # STUDY=1 trains every arm, and the sweep, in micro-batches of 4 (the same update, less memory)
    assert {json.loads((run / "ckpt" / f"{a}-s0" / "args.json").read_text())["micro_batch"]
            for a in (*steps, "sr")} == {4}
    assert json.loads((run / "ckpt" / "sweep" / "args.json").read_text())["micro_batch"] == 4
    mix = json.loads((run / "ckpt" / "iwm-mix-s0" / "args.json").read_text())["data"]
    assert [os.path.basename(d) for d in mix] == ["iwm.jsonl", "expert.jsonl"]
    # the world-model data holds the policy's own moves as written (K_PROP=1 in SMOKE)
    assert any(e["meta"]["source"] == "proposal" for e in common.read_jsonl(run / "iwm.jsonl"))
    if steps["iwm-stage1"] < steps["il"]:
        assert steps["iwm-within"] == steps["il"] - steps["iwm-stage1"]
    else:  # the world-model epoch does not fit in the budget: half each, still the budget in total
        own = sum(1 for _ in open(run / "ckpt" / "iwm-within-stage1-s0" / "loss.jsonl"))
        assert own == steps["il"] // 2 and own + steps["iwm-within"] == steps["il"]
    assert (run / "rl" / "curves.png").exists() and (run / "rl" / "sr-s0" / "curve.jsonl").exists()
    before = (run / "expert.jsonl").stat().st_mtime
    r = subprocess.run(["bash", "run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    log = (run / "stage_times.tsv").read_text()
    assert log.count("\n# ") == 1 and log.startswith("# ")  # one header per invocation, appended
    last = log.split("\n# ")[-1].split("\n")[1:]
    assert [t.split("\t")[0] for t in last if t] == ["total"]  # nothing re-ran
    assert (run / "expert.jsonl").stat().st_mtime == before
    # a folder of results without its checkpoints (committed, then cloned) resumes without retraining

    # (resumed with other ARMS, as a study is continued arm by arm: the table against IL-long is
    # still rebuilt, from the IL-long evaluations already in the folder)
    shutil.rmtree(run / "ckpt")
    (run / "results-vs-il-long.jsonl").unlink()
    r = subprocess.run(["bash", "run.sh"], cwd=ROOT, env={**env, "ARMS": "il iwm"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    last = (run / "stage_times.tsv").read_text().split("\n# ")[-1].split("\n")[1:]
    assert [t.split("\t")[0] for t in last if t] == ["total"] and not (run / "ckpt").exists()
    assert common.read_jsonl(run / "results-vs-il-long.jsonl") == vs
    # resumed with study.sh on a machine where the dtype differs, seed 0 stops before anything trains:
    # one clear line (a seed's arms are compared game by game, in one dtype)
    args = run / "eval" / "il" / "s0" / "args.json"
    args.write_text(json.dumps({**json.loads(args.read_text()), "dtype_resolved": "fp16"}))
    shutil.rmtree(run / "eval" / "iwm" / "s0")
    r = subprocess.run(["bash", "study.sh"], cwd=ROOT, env={**env, "DTYPE": "fp32"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {run}/eval/il/s0: seed 0's arms ran in fp16, and --dtype fp32 is fp32 on this machine; one seed's arms "
        "share a dtype: resume it where fp16 is what auto gives, set DTYPE=fp16 (can be many times slower here: "
        "docs/benchmarks.md), or go on with another seed"], r.stderr[-2000:]
    assert not (run / "ckpt").exists() and not (run / "eval" / "iwm" / "s0").exists()


def _setting(**env):
    """run.sh's resolved knobs for a command line (DRY_RUN=1 prints them and runs nothing)."""
    keep = {k: v for k, v in os.environ.items() if k not in ("SMOKE", "STUDY", "STUDY2", "SCARCE", "PRESET", "FIXED16", "TASKS", "LR", "EPOCHS",
                                                              "K_IWM", "K_SR", "PROMPT_MODES", "ENV", "MODEL", "BATCH",
                                                              "SPLITS", "EPISODES", "EVAL_BATCH")}
    r = subprocess.run(["bash", "run.sh"], cwd=ROOT, env={**keep, "DRY_RUN": "1", **env}, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def test_the_default_run_uses_the_setting_chosen_on_dev_and_the_presets_keep_theirs(tmp_path):
    run = str(tmp_path / "dry")
    d = _setting(RUN=run)  # plain `bash run.sh`: 24 games, LoRA 1e-3 in batches of 4, 118 steps (2 epochs of 59), K = 1 + 1
    assert (d["TASKS"], d["LR"], d["BATCH"], d["EPOCHS"], d["K_IWM"], d["K_SR"], d["PROMPT_MODES"]) == \
        ("24", "1e-3", "4", "2", "1", "1", "mapped")
    assert (d["SPLITS"], d["EVAL_BATCH"]) == ("test", "20")  # in domain only: one lockstep batch of 20 episodes
    assert not (tmp_path / "dry").exists()  # a dry run writes nothing
    given = _setting(RUN=run, TASKS="8", BATCH="8")  # a knob given wins, the rest of the setting stays
    assert (given["TASKS"], given["BATCH"], given["LR"]) == ("8", "8", "1e-3")
    old = _setting(RUN=run, FIXED16="1")  # the earlier default, which the comparison, RL and ablations used
    assert (old["TASKS"], old["LR"], old["BATCH"], old["EPOCHS"], old["K_IWM"], old["PROMPT_MODES"], old["SPLITS"],
            old["EVAL_BATCH"]) == ("16", "2e-4", "8", "2", "2", "raw mapped", "test ood", "40")
    study = _setting(RUN=run, STUDY="1")  # the study keeps its own recipe
    assert (study["TASKS"], study["LR"], study["BATCH"], study["K_IWM"], study["K_PROP"], study["BUDGET"], study["SPLITS"],
            study["EVAL_BATCH"]) == ("64", "2e-4", "8", "2", "2", "sweep", "test ood", "50")
    for other in ({"ENV": "textcraft"}, {"MODEL": "Qwen/Qwen2.5-0.5B-Instruct"}):  # the knob lines hold everywhere
        other = _setting(RUN=run, **other)
        assert (other["TASKS"], other["LR"], other["BATCH"]) == ("24", "1e-3", "4")
    assert _setting(RUN=run, ENV="bfcl:x")["MICRO_BATCH"] == "2"  # long states: micro-batches of 2
    r = subprocess.run(["bash", "run.sh"], cwd=ROOT, env={**os.environ, "DRY_RUN": "1", "RUN": run, "PROMPT_MODES": "raw mapd"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "PROMPT_MODES=raw mapd" in r.stderr and not (tmp_path / "dry").exists()
    r = subprocess.run(["bash", "run.sh"], cwd=ROOT, env={**os.environ, "DRY_RUN": "1", "RUN": run, "SPLITS": "test dev"},
                       capture_output=True, text=True, timeout=60)  # dev is for choosing settings, never a result row
    assert r.returncode == 2 and "SPLITS=test dev" in r.stderr and not (tmp_path / "dry").exists()


def test_study2_reads_the_budget_the_arms_get(tmp_path):
    """SMOKE=1 STUDY2=1: a constant-schedule sweep whose checkpoint at the budget is IL's seed-0 arm
    (copied, not retrained), IL-long continued from IL (its first B steps are IL's), no reflections
    without an SR arm, and the game-level table."""
    run = tmp_path / "study2"
    env = {**os.environ, "SMOKE": "1", "STUDY2": "1", "RUN": str(run), "RL": "0", "MAPPED": "0"}
    dry = subprocess.run(["bash", "run.sh"], cwd=ROOT, env={**env, "DRY_RUN": "1"}, capture_output=True, text=True, timeout=60)
    settings = dict(line.split("=", 1) for line in dry.stdout.splitlines() if "=" in line)
    assert settings["SCHEDULE"] == "constant" and settings["BUDGET"] == "sweep" and settings["ARMS"] == "il il-long iwm iwm-targeted"
    r = subprocess.run(["bash", "run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    budget = json.loads((run / "budget.json").read_text())
    b = budget["steps"]
    point = run / "ckpt" / "sweep-steps" / f"step-{b:05d}"
    point = point if point.exists() else run / "ckpt" / "sweep"
    il, sweep = load_file(str(run / "ckpt" / "il-s0" / "adapter_model.safetensors")), load_file(str(point / "adapter_model.safetensors"))
    assert il.keys() == sweep.keys() and all((il[k] == sweep[k]).all() for k in il)
    assert json.loads((point / "args.json").read_text())["schedule"] == "constant"
    il_log = common.read_jsonl(run / "ckpt" / "il-s0" / "loss.jsonl")
    long_log = common.read_jsonl(run / "ckpt" / "il-long-s0" / "loss.jsonl")
    stage1 = sum(1 for _ in open(run / "ckpt" / "iwm-stage1-s0" / "loss.jsonl"))
    assert len(il_log) == b and len(long_log) == b + stage1 and long_log[:b] == il_log
    assert json.loads((run / "ckpt" / "il-long-s0" / "args.json").read_text())["continue_from"].endswith("il-s0/state.pt")
    assert not (run / "reflect.jsonl").exists()  # no SR arm: no reflections
    # PROBE=1 (the preset's): each arm's world model probed on held-out dev transitions, seed 0
    assert common.read_jsonl(run / "probe-data" / "expert.jsonl")[0]["task_id"].split("/")[1] == "dev"
    labels = {a: [r["model"] for r in common.read_jsonl(run / "probe" / a / "probe_summary.jsonl")]
              for a in ("base", "il-s0", "il-long-s0", "iwm-s0", "iwm-targeted-s0")}
    assert labels == {"base": ["base"], "il-s0": ["il"], "il-long-s0": ["il-long"], "iwm-s0": ["iwm-stage1", "iwm"],
                      "iwm-targeted-s0": ["iwm-targeted-stage1", "iwm-targeted"]}
    # the targeted arm's stage 1 is as long as the paper's (the same number of examples, W steps)
    w = sum(1 for _ in open(run / "ckpt" / "iwm-stage1-s0" / "loss.jsonl"))
    assert sum(1 for _ in open(run / "ckpt" / "iwm-targeted-stage1-s0" / "loss.jsonl")) == w
    rows = common.read_jsonl(run / "results.jsonl")
    assert {x["method"] for x in rows} == {"prompt-mapped", "il", "il-long", "iwm", "iwm-targeted"}
    assert all("games_vs_il" in x for x in rows if x["method"] != "il")
    assert (run / "results.png").stat().st_size > 5000  # the figure beside the table


def test_scarce_preset_resolves_and_runs_end_to_end(tmp_path):
    """SCARCE=1: 16 games, K = 8 uniform alternatives per expert state and no policy proposals (no
    constant error targets), v2's protocol; SMOKE=1 SCARCE=1 runs it end to end, and its world-model
    file holds every state's 8 alternatives (fewer only where fewer moves are valid) without duplicates."""
    dry = subprocess.run(["bash", "run.sh"], cwd=ROOT, env={**os.environ, "SCARCE": "1", "DRY_RUN": "1"},
                         capture_output=True, text=True, timeout=60)
    s = dict(line.split("=", 1) for line in dry.stdout.splitlines() if "=" in line)
    assert (s["TASKS"], s["K_IWM"], s["K_SR"], s["K_PROP"], s["SCHEDULE"], s["BUDGET"], s["EPISODES"]) == \
        ("16", "8", "0", "0", "constant", "sweep", "200")
    assert s["ARMS"] == "il il-long iwm iwm-targeted" and s["CONSEQUENTIAL"] == "1" and s["RUN"] == "runs/scarce"
    run = tmp_path / "scarce"
    env = {**os.environ, "SMOKE": "1", "SCARCE": "1", "RUN": str(run), "RL": "0", "MAPPED": "0"}
    r = subprocess.run(["bash", "run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rollouts = common.read_jsonl(run / "rollouts.jsonl")
    examples = common.read_jsonl(run / "iwm.jsonl")
    assert {e["meta"]["source"] for e in examples} == {"valid", "expert"}
    per_state = {}
    for e in examples:
        per_state.setdefault((e["meta"]["task_id"], e["meta"]["step"]), []).append(e["messages"][1]["content"])
    for row in rollouts:
        valid = [a for a in row["alternatives"] if a["source"] == "valid"]
        offered = row["state"].rsplit("Valid actions: ", 1)[1].strip().split(", ")
        assert len(valid) == min(8, len(offered) - 1)  # every state: 8, or all there are besides the expert's
        got = per_state[(row["task_id"], row["step"])]
        assert len(got) == len(valid) + 1 and len(set(got)) == len(got)  # no duplicate (state, action)
    assert sum(len(v) for v in per_state.values()) == len(examples)
    assert sum(len(v) == 9 for v in per_state.values()) >= len(per_state) // 2
    assert (run / "iwm-targeted.jsonl").exists() and len(common.read_jsonl(run / "iwm-targeted.jsonl")) == len(examples)
    assert {x["method"] for x in common.read_jsonl(run / "results.jsonl")} >= {"il", "il-long", "iwm", "iwm-targeted"}


def test_the_knob_lines_state_what_bash_run_sh_runs_and_no_python_is_inlined(tmp_path):
    """run.sh as one honest page: each knob line's default is what a plain `bash run.sh` resolves to
    (no block above them changes it), every other setting is a preset file, and no `python -c`."""
    text = (ROOT / "run.sh").read_text()
    knobs = text.split("# ---- the knobs", 1)[1].split("# ----", 1)[0]
    stated = dict(re.findall(r"^(\w+)=\$\{\1:-([^}]*)\}", knobs, flags=re.M))
    assert len(stated) >= 12
    resolved = _setting(RUN=str(tmp_path / "dry"))
    assert {k: resolved[k] for k in stated if k != "RUN"} == {k: v for k, v in stated.items() if k != "RUN"}
    assert "python -c" not in text and "python3 -c" not in text
    assert sorted(p.stem for p in (ROOT / "presets").glob("*.sh")) == ["fixed16", "scarce", "smoke", "study", "study2"]


def test_a_first_run_smoke_covers_every_stage_and_draws_the_figure(tmp_path):
    """SMOKE=1 bash run.sh, the newcomer's first run: the default run's stages (collect, budget, world-model
    data, reflections, IL / IWM / SR trained and read, the tables, RL) on the tiny model, and results.png
    with one bar per arm and split beside the loss curves."""
    run = tmp_path / "smoke"
    r = subprocess.run(["bash", "run.sh"], cwd=ROOT, env={**os.environ, "SMOKE": "1", "RUN": str(run)},
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    stages = [ln.split("\t")[0] for ln in (run / "stage_times.tsv").read_text().splitlines()[1:]]
    for stage in ("collect", "iwm", "reflect", "train il-s0", "train iwm-stage1-s0", "train sr-s0", "eval sr/s0",
                  "rl il-s0", "eval rl-il/s0", "total"):
        assert stage in stages, stage
    rows = common.read_jsonl(run / "results.jsonl")
    assert sorted(x["method"] for x in rows) == sorted(["prompt-mapped", "il", "iwm", "sr", "rl-il"])
    png = run / "results.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20000
    assert report.plot_results(rows, tmp_path / "again.png", "t") == [f"{x['method']}/test" for x in
                                                                       sorted(rows, key=lambda x: report.method_rank(x["method"]))]
    assert set(report.loss_curves(run)) == {"il-s0", "iwm-stage1-s0", "iwm-s0", "sr-s0"}
