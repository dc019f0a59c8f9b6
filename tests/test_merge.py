"""merge.py: a checkpoint becomes one full model folder that plain transformers loads, with the same
greedy answers and the base's provenance in its card."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import agent
import common
import merge
import models
import prompts
import train


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merge")
    data = tmp / "expert.jsonl"
    common.write_jsonl(data, [{"messages": prompts.policy_messages(f"Observation: room {i}", f"Action: go {i % 3}")}
                              for i in range(8)])
    train.main(["--data", str(data), "--model", "tiny-random", "--dtype", "fp32", "--batch", "4", "--steps", "6",
                "--lr", "2e-2", "--out", str(tmp / "il")])
    return tmp / "il"


def test_merged_folder_loads_with_plain_transformers_and_answers_the_same(ckpt, tmp_path):
    merge.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "il-merged")])
    folder = tmp_path / "il-merged"
    assert not (folder / "adapter_config.json").exists() and (folder / "config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(str(folder))
    plain_tok = AutoTokenizer.from_pretrained(str(folder))
    plain_tok.padding_side = "left"
    ours, tok = models.load_model(str(ckpt), dtype="fp32", device="cpu")
    base, _ = models.load_model("tiny-random", dtype="fp32", device="cpu")
    chats = [prompts.policy_messages(f"Observation: room {i}") for i in range(4)]
    ids = torch.tensor([tok(agent.render(tok, chats[0], add_generation_prompt=True))["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, ours(ids).logits, atol=1e-5)
        assert (plain(ids).logits - base(ids).logits).abs().max() > 1e-3  # the update is in the weights
    a = agent.generate(ours, tok, chats, max_new_tokens=8)
    b = agent.generate(plain, plain_tok, chats, max_new_tokens=8)
    assert a == b and all(a)  # the same greedy answers, token for token
    card = (folder / "README.md").read_text()
    assert "library_name: transformers" in card and "tiny random test model" in card
    assert "IL (imitation)" in card  # the checkpoint's own card carried over
    assert json.loads((folder / "merge_args.json").read_text())["ckpt"] == str(ckpt)


def test_bf16_copy_and_refusals(ckpt, tmp_path):
    merge.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "half"), "--dtype", "bf16"])
    assert AutoModelForCausalLM.from_pretrained(str(tmp_path / "half")).dtype == torch.bfloat16
    with pytest.raises(common.UserError, match="exists"):
        merge.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "half")])
    with pytest.raises(common.UserError, match="not a checkpoint"):
        merge.main(["--ckpt", str(tmp_path), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))


def test_embedded_base_card_names_the_public_model_and_the_4bit_source():
    public, line = models.base_provenance(models.EMBEDDED)
    assert public == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "Q4_1" in line and "not the published weights" in line
    assert models.base_provenance("Qwen/Qwen2.5-0.5B-Instruct")[0] == "Qwen/Qwen2.5-0.5B-Instruct"
