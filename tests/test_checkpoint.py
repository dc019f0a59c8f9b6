"""checkpoint.py: a checkpoint survives a kill at any instant of its swap and a full disk; resume points
are refused when damaged and kept whole when a write is killed; a checkpoint travels with its card."""
import errno
import json
import os
import shutil

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

import checkpoint
import common
import evaluate
import models
import prompts
import train
from conftest import run_script, tiny_checkpoint


def _weights(folder):
    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.parametrize("killed_at", [1, 2])
def test_a_kill_during_the_checkpoint_swap_never_loses_the_checkpoint(tmp_path, monkeypatch, killed_at):
    """save_checkpoint over an existing checkpoint, killed after the first rename (old aside, new not
    yet in) or after the second (new in, old not yet deleted): the next load or save finds one
    complete checkpoint, the old one or the new one, and no temporary folder."""
    out = tiny_checkpoint(tmp_path, "il", 2)
    before = _weights(out)
    calls = []
    real = os.replace

    def replace(a, b):
        folder = os.path.isdir(a)  # the swap's renames (atomic file writes use os.replace too)
        real(a, b)
        if folder:
            calls.append(1)
            if len(calls) == killed_at:
                raise KeyboardInterrupt  # stands for the kill: nothing after this instant runs

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        tiny_checkpoint(tmp_path, "il", 4)
    monkeypatch.setattr(checkpoint.os, "replace", real)
    if killed_at == 1:
        assert not out.exists() and (tmp_path / ".il.old").exists()  # the instant the old code lost both
    models.load_model(str(out), dtype="fp32")  # loading finishes or rolls back the swap
    after = _weights(out)
    expected_old = killed_at == 1

    assert all(torch.equal(after[k], before[k]) for k in after) is expected_old
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".il")] == []


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    out = tiny_checkpoint(tmp_path, "il", 2)
    before = _weights(out)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_checkpoint", full)
    with pytest.raises(OSError):
        tiny_checkpoint(tmp_path, "il", 3)

    assert all(torch.equal(_weights(out)[k], before[k]) for k in before)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".il.")] == []
    # and through the command line: one line, exit 2 (common.run_main), the checkpoint intact (a copy in
    # another folder: this process holds the first one's output lock)

    out = tmp_path / "cli" / "il"
    shutil.copytree(tmp_path / "il", out)
    r = run_script("-c", "import errno, checkpoint, sys, common, train; "
                         "checkpoint._write_checkpoint = lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, 'No space left on device')); "
                         f"sys.argv = ['train.py', '--model', 'tiny-random', '--dtype', 'fp32', '--data', '{tmp_path / 'expert.jsonl'}', "
                         f"'--steps', '3', '--batch', '3', '--threads', '1', '--out', '{out}']; common.run_main(train.main)")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == "error: No space left on device"
    assert all(torch.equal(_weights(out)[k], before[k]) for k in before)


def test_a_damaged_resume_point_is_refused_by_name_and_stale_temporaries_go(tmp_path):
    data = tmp_path / "expert.jsonl"
    common.write_jsonl(data, [{"messages": prompts.policy_messages(f"Observation: room {i}", f"Action: go {i % 3}")}
                              for i in range(6)])
    out = tmp_path / "il"
    argv = ["--model", "tiny-random", "--dtype", "fp32", "--data", str(data), "--steps", "4", "--batch", "3",
            "--threads", "1", "--resume-every", "1", "--out", str(out)]
    point = train.resume_path(out)
    point.write_bytes(b"PK\x03\x04 cut short")  # a resume point cut to a few bytes
    stale = tmp_path / ".il.resume.pt.abcd1234"
    stale.write_bytes(b"half")
    r = run_script("train.py", *argv)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"{point}: damaged" in r.stderr and "delete it" in r.stderr
    assert not out.exists()  # refused before any work
    point.unlink()
    r = run_script("train.py", *argv)
    assert r.returncode == 0 and (out / "adapter_model.safetensors").exists()
    assert not stale.exists() and not point.exists()  # the rerun leaves no temporary file


def test_a_kill_while_a_resume_point_is_written_keeps_the_previous_one(tmp_path, monkeypatch):
    point = tmp_path / "il.resume.pt"
    args = type("A", (), {"lr": 1.0})()
    checkpoint.save_resume_point(point, args, ("lr",), {"step": 1})

    def killed_midway(obj, f):
        with open(f, "wb") as h:
            h.write(b"PK\x03\x04 half of a resume point")
        raise KeyboardInterrupt  # the kill, halfway through the write

    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_resume_point(point, args, ("lr",), {"step": 2})
    monkeypatch.undo()
    assert checkpoint.load_resume_point(point, args, ("lr",))["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["il.resume.pt"]


def test_checkpoint_travels_and_carries_a_model_card(tmp_path):
    # the adapter names its base by the name any machine with this repository resolves (no cache path
    # of this one), our loader gives the logits of base + adapter; the card says what was trained and
    # gains the evaluation; a checkpoint written by an older version (a cache path of another machine
    # in the adapter) still loads through the alias beside it
    data = tmp_path / "expert.jsonl"
    common.write_jsonl(data, [{"messages": prompts.policy_messages(f"Observation: room {i}", f"Action: go {i % 2}")}
                              for i in range(6)])
    ck = tmp_path / "il"
    train.main(["--data", str(data), "--model", "tiny-random", "--dtype", "fp32", "--batch", "3", "--steps", "3",
                "--lr", "1e-2", "--out", str(ck)])
    cfg = json.loads((ck / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "tiny-random"
    assert json.loads((ck / "base_model.json").read_text()) == {"alias": "tiny-random"}
    cache = str(models.CACHE)
    assert not any(cache in f.read_text(errors="ignore") for f in ck.iterdir() if f.suffix in (".json", ".md"))
    base, _ = models.load_model("tiny-random", dtype="fp32", device="cpu")
    plain = PeftModel.from_pretrained(base, str(ck))  # base + adapter, assembled by hand
    ours, tok = models.load_model(str(ck), dtype="fp32", device="cpu")
    ids = torch.tensor([tok("<|im_start|>user\nObservation: room 1<|im_end|>")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, ours(input_ids=ids).logits, atol=1e-5)
    card = (ck / "README.md").read_text()
    assert "tiny random test model" in card and "merge.py --ckpt" in card
    assert "More Information Needed" not in card and "IL (imitation)" in card
    assert "expert.jsonl (6 examples)" in card and "| optimizer steps | 3 (batch 3" in card
    evaluate.main(["--model", str(ck), "--env", "twx-cooking", "--split", "test", "--episodes", "2", "--batch", "2",
                   "--max-steps", "2", "--dtype", "fp32", "--out", str(tmp_path / "ev")])
    row = common.read_jsonl(tmp_path / "ev" / "summary.jsonl")[0]
    assert f"| test | raw | 2 | {100 * row['success']:.1f}% |" in (ck / "README.md").read_text()
    cfg["base_model_name_or_path"] = "/elsewhere/tiny-random"  # another machine's cache
    (ck / "adapter_config.json").write_text(json.dumps(cfg))
    again, _ = models.load_model(str(ck), dtype="fp32", device="cpu")
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, ours(input_ids=ids).logits)
