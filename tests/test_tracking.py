"""tracking.py: --track tensorboard writes every logged number of every step; without it, nothing."""
import pytest

import common
import prompts
import train

pytest.importorskip("tensorboard", reason="pip install -r requirements-test.txt")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def test_tracking_writes_tensorboard_scalars_equal_to_the_loss_log(tmp_path):
    # opt-in (--track tensorboard): every logged number of every step, readable by TensorBoard itself
    data = tmp_path / "expert.jsonl"
    common.write_jsonl(data, [{"messages": prompts.policy_messages(f"Observation: room {i}", "Action: look")} for i in range(4)])
    ck = tmp_path / "il"
    train.main(["--data", str(data), "--model", "tiny-random", "--dtype", "fp32", "--batch", "2", "--steps", "4",
                "--track", "tensorboard", "--out", str(ck)])
    acc = EventAccumulator(str(tmp_path / "il-tb"))
    acc.Reload()
    log = common.read_jsonl(ck / "loss.jsonl")
    got = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert [s for s, _ in got] == [1, 2, 3, 4]
    assert [v for _, v in got] == pytest.approx([r["loss"] for r in log])
    assert {"lr", "tokens_per_s", "target_tokens"} <= set(acc.Tags()["scalars"])
    train.main(["--data", str(data), "--model", "tiny-random", "--dtype", "fp32", "--batch", "2", "--steps", "1",
                "--out", str(tmp_path / "quiet")])
    assert not (tmp_path / "quiet-tb").exists()
