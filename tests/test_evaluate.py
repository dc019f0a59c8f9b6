"""evaluate.py: well-formed outputs, determinism, resume, one-line errors."""
import json

import pytest

import common
import evaluate
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
