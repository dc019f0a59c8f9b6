"""Share a trained policy: merge a checkpoint's LoRA adapter(s) into one full model folder.

A train.py checkpoint is a small LoRA adapter over a base named by this repository (`smollm2-135m`,
`tiny-random`, a Hub id); an rl.py checkpoint is a second adapter over that one. Serving tools, the
Hub and a machine without this repository want one plain model folder instead: this script loads
the checkpoint, adds each adapter's update B A into the base weights, and writes a folder that
`AutoModelForCausalLM.from_pretrained(OUT)` loads with the same greedy answers (tests/test_merge.py).

The merge is done in fp32: merging into bf16 weights rounds most of a LoRA update away (the update
is smaller than a bf16 weight's rounding step; models.load_model). --dtype bf16 then stores the
merged weights in bf16, half the size, rounded like any bf16 copy of a model.
The folder keeps the base's provenance in its card (for the embedded model: a dequantized 4-bit
copy of SmolLM2-135M-Instruct, not the published weights) and no generation defaults: the decoding
settings belong to whoever runs it (ours: agent.decoding_config).

Inputs:  --ckpt: a train.py or rl.py checkpoint (or a --full one, copied as it is)
Outputs: --out: config.json, model.safetensors, tokenizer files, README.md, merge_args.json

Examples:
  python merge.py --ckpt runs/default/ckpt/il-s0 --out runs/default/merged/il-s0
  python merge.py --ckpt runs/default/rl/il-s0/ckpt --out il-grpo --dtype bf16
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from peft import PeftModel

import checkpoint
import common
import models


def parse_args(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="checkpoint folder (train.py or rl.py output)")
    p.add_argument("--out", required=True, help="the full model folder to write (must not exist)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="dtype of the stored weights (the merge itself is always fp32)")
    return p.parse_args(argv)


def merged_model(ckpt: str):
    """(plain transformers model with every adapter of ckpt added into its weights, tokenizer, base name)."""
    folder = Path(ckpt)
    if not (folder / "adapter_config.json").exists() and not (folder / "config.json").exists():
        raise common.UserError(f"{folder}: not a checkpoint (no adapter_config.json or config.json)")
    model, tok = models.load_model(ckpt, dtype="fp32", device="cpu")  # fp32: load_model merges
    while isinstance(model, PeftModel):  # a stacked checkpoint keeps its adapters apart until here
        model = model.merge_and_unload()
    base = folder
    while (base / "base_model.json").exists():  # the root of a chain of adapter checkpoints
        name = json.loads((base / "base_model.json").read_text())["alias"]
        if not (Path(name) / "adapter_config.json").exists():
            return model, tok, name
        base = Path(name)
    return model, tok, None


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    if out.exists():
        raise common.UserError(f"{out} exists: choose another --out or delete it")
    model, tok, base = merged_model(args.ckpt)
    model = model.to({"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype])
    model.config.name_or_path = out.name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:  # written aside, then renamed into place: a kill or a full disk leaves no half folder at OUT
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "README.md").write_text(checkpoint.merged_card(Path(args.ckpt), *(models.base_provenance(base) if base else (None, "see the checkpoint's card")), args.dtype), encoding="utf-8")
        models.note_dtype(args)
        common.save_args(args, tmp, "merge_args.json")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {n / 1e6:.1f}M parameters in {args.dtype} (load it with AutoModelForCausalLM.from_pretrained)")
    return out


if __name__ == "__main__":
    common.run_main(main)
