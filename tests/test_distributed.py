"""Scaling past one process: train.py under torchrun (DDP, gloo on CPU) and --shard I/N of the data
and evaluation scripts, whose outputs concatenate into what one process writes."""
import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

import collect
import evaluate
import reflect
import train
from conftest import ROOT, run_script


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-data")
    collect.main(["--env", "twx-coin:numLocations=2", "--tasks", "6", "--k-iwm", "1", "--k-sr", "0", "--out", str(out)])
    return out / "expert.jsonl"


def _losses(folder):
    return [json.loads(x)["loss"] for x in (folder / "loss.jsonl").read_text().splitlines()]


def test_torchrun_two_processes_match_one_process(data, tmp_path):
    # --batch 5 over 2 processes: shares of 3 and 2 examples, and a last short batch: the sums must agree
    common_args = ["--model", "tiny-random", "--dtype", "fp32", "--data", str(data), "--steps", "6",
                   "--batch", "5", "--lr", "1e-2", "--seed", "3"]
    one = run_script("train.py", *common_args, "--threads", "1", "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29517", "train.py", *common_args, "--out", str(tmp_path / "two")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 6
    # bf16 autocast and a different summation order: equal to ~1e-3, and the updates must agree too
    # (a wrong gradient scale would make the later losses drift apart)
    assert b == pytest.approx(a, rel=2e-3, abs=2e-3)
    assert a[-1] < a[0] - 0.1  # it learned, so matching losses say something about the gradients


def test_uneven_micro_batches_never_hang_and_give_one_process_weights(data, tmp_path):
    """--batch 5 --micro-batch 2 over 2 processes: shares of 3 and 2 examples would be 2 and 1
    micro-batches, so 2 and 1 backward passes and unpaired all-reduces (a hang). Every rank runs as
    many micro-batches as the others; the result equals one process's, weight for weight."""
    common_args = ["--model", "tiny-random", "--dtype", "fp32", "--data", str(data), "--steps", "4",
                   "--batch", "5", "--micro-batch", "2", "--lr", "1e-2", "--seed", "3"]
    one = run_script("train.py", *common_args, "--threads", "1", "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    try:
        two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                              "--master_port", "29519", "train.py", *common_args, "--out", str(tmp_path / "two")],
                             cwd=ROOT, capture_output=True, text=True, timeout=240,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("torchrun with uneven micro-batches hung")
    assert two.returncode == 0, two.stderr[-3000:]
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=1e-3)
    a = load_file(str(tmp_path / "one" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and a
    # LoRA's B starts at 0, so B is the update itself. Adam moves a coordinate by ~lr whatever its
    # gradient's size, so coordinates whose gradient is ~0 differ between any two summation orders
    # (one process with and without --micro-batch differ as much): compare the update as a whole
    # (measured: 1% apart; a wrong gradient scale or a dropped micro-batch gives tens of percent)
    diff = sum(float(((a[k] - b[k]) ** 2).sum()) for k in a if "lora_B" in k) ** 0.5
    size = sum(float((a[k] ** 2).sum()) for k in a if "lora_B" in k) ** 0.5
    assert size > 1e-3 and diff / size < 0.05


def test_every_rank_gets_the_same_number_of_micro_batches():
    batch = list(range(5))
    for world, micro in ((2, 2), (2, 1), (3, 2), (4, 4), (2, 5)):
        parts = [train.micro_batches(batch, r, world, micro) for r in range(world)]
        assert len({len(p) for p in parts}) == 1
        real = sorted(x for p in parts for ex, w in p if w for x in ex)
        assert real == batch  # every example exactly once, at weight 1
        assert all(len(ex) <= micro for p in parts for ex, _ in p)
    # a batch shorter than the processes: the idle rank runs one weight-0 example
    assert train.micro_batches([7], 1, 2, 2) == [([7], 0.0)]


def _cat(*files):
    return "".join(f.read_text() for f in files)


def test_shards_concatenate_to_the_one_process_files(tmp_path):
    """collect.py, reflect.py and evaluate.py with --shard 0/2 and 1/2 in two folders: the
    concatenated JSONL files are byte-identical to one process's."""
    args = ["--env", "twx-cooking", "--tasks", "3", "--k-iwm", "1", "--k-sr", "2", "--model", "tiny-random",
            "--dtype", "fp32", "--chunk", "1"]
    one, s0, s1 = tmp_path / "one", tmp_path / "s0", tmp_path / "s1"
    collect.main(args + ["--out", str(one)])
    collect.main(args + ["--shard", "0/2", "--out", str(s0)])
    collect.main(args + ["--shard", "1/2", "--out", str(s1)])
    for name in ("expert.jsonl", "rollouts.jsonl"):
        assert _cat(s0 / name, s1 / name) == (one / name).read_text()
        assert (s0 / name).read_text() and (s1 / name).read_text()  # both shards did some of the work

    refl = ["--run", str(one), "--model", "tiny-random", "--dtype", "fp32", "--batch", "4", "--min-words", "1"]
    reflect.main(refl)
    reflect.main(refl + ["--shard", "0/2", "--out", str(s0)])
    reflect.main(refl + ["--shard", "1/2", "--out", str(s1)])
    assert _cat(s0 / "reflections.jsonl", s1 / "reflections.jsonl") == (one / "reflections.jsonl").read_text()
    assert _cat(s0 / "reflect.jsonl", s1 / "reflect.jsonl") == (one / "reflect.jsonl").read_text()
    assert (s0 / "reflections.jsonl").read_text() and (s1 / "reflections.jsonl").read_text()

    ev = ["--model", "tiny-random", "--dtype", "fp32", "--env", "twx-coin:numLocations=2", "--split", "test",
          "--episodes", "6", "--batch", "3", "--max-steps", "3"]
    evaluate.main(ev + ["--out", str(one / "eval")])
    evaluate.main(ev + ["--shard", "0/2", "--out", str(s0 / "eval")])
    evaluate.main(ev + ["--shard", "1/2", "--out", str(s1 / "eval")])
    assert _cat(s0 / "eval/test.jsonl", s1 / "eval/test.jsonl") == (one / "eval/test.jsonl").read_text()
    assert len((one / "eval/test.jsonl").read_text().splitlines()) == 6
