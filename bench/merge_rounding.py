"""How much of a LoRA update survives being merged into bf16 weights (why models.load_model keeps
adapters unmerged unless the weights are fp32).

For a checkpoint (train.py's adapter over its base, or rl.py's adapter over a train.py checkpoint),
the update is measured in fp32 (merged model minus its start) and compared with what a bf16 merge
keeps: the fraction of moved weights that round back to their start value, and the relative error
of the update (norm of the difference / norm of the update), over the adapted 2-D weights.

  python bench/merge_rounding.py runs/default/ckpt/il-s0
  python bench/merge_rounding.py runs/default/rl/iwm-s0/ckpt --start runs/default/ckpt/iwm-s0
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from peft import PeftModel

import common  # noqa: E402
import models


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a LoRA checkpoint folder")
    p.add_argument("--start", default=None, help="what the update is measured from (default: the checkpoint's base)")
    args = p.parse_args(argv)
    start = args.start or common.json.loads((Path(args.checkpoint) / "adapter_config.json").read_text())["base_model_name_or_path"]
    after32, _ = models.load_model(args.checkpoint, dtype="fp32")  # merged in fp32: the update, exactly enough
    start32, _ = models.load_model(start, dtype="fp32")

    def bf16_start():  # the old way: the start merged into bf16 weights as well
        m, _ = models.load_model(start, dtype="bf16")
        return m.merge_and_unload() if isinstance(m, PeftModel) else m

    merged16 = PeftModel.from_pretrained(bf16_start(), args.checkpoint).merge_and_unload()
    start16 = bf16_start()
    moved = erased = total = 0
    err = norm = 0.0
    for (n, a), (_, s), (_, m), (_, s16) in zip(after32.named_parameters(), start32.named_parameters(),
                                                 merged16.named_parameters(), start16.named_parameters()):
        if a.dim() != 2 or "embed" in n:
            continue
        d32, d16 = a - s, m.float() - s16.float()
        total += d32.numel()
        moved += (d32 != 0).sum().item()
        erased += ((d32 != 0) & (d16 == 0)).sum().item()
        err += (d16 - d32).norm().item() ** 2
        norm += d32.norm().item() ** 2
    print(f"{args.checkpoint}: weights moved by the update {moved / total:.1%}; of those, back at their start "
          f"value after a bf16 merge {erased / max(1, moved):.1%}; relative error of the merged update "
          f"{(err / max(norm, 1e-30)) ** 0.5:.2f}")


if __name__ == "__main__":
    main()
