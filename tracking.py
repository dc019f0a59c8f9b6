"""Opt-in experiment tracking for train.py and rl.py (--track): off by default, no hard dependency.

  --track tensorboard   TensorBoard event files in OUT-tb/ (offline; needs `pip install tensorboard`),
                        then: tensorboard --logdir runs/<name>/ckpt
  --track wandb         Weights & Biases, offline unless WANDB_MODE says otherwise (needs `pip install
                        wandb`); `wandb sync` uploads a run later

Every numeric entry of a log row becomes a scalar at that step; the run's arguments are its config.
The loss.jsonl / curve.jsonl files stay the record either way.
"""
from __future__ import annotations

import os
from pathlib import Path

from common import UserError

KINDS = ("none", "tensorboard", "wandb")


class Tracker:
    def __init__(self, kind: str, out: Path, config: dict, name: str):
        self.kind, self._tb, self._wandb = kind, None, None
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("--track tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.dir = Path(out)
            self._tb = SummaryWriter(log_dir=str(self.dir))
            self._tb.add_text("args", "\n".join(f"    {k}: {v}" for k, v in config.items()))
        elif kind == "wandb":
            try:
                import wandb
            except ImportError:
                raise UserError("--track wandb needs the wandb package: pip install wandb") from None
            self.dir = Path(out)
            self.dir.mkdir(parents=True, exist_ok=True)
            self._wandb = wandb.init(project="early-experience", name=name, dir=str(self.dir), config=config,
                                     mode=os.environ.get("WANDB_MODE", "offline"))
        elif kind != "none":
            raise UserError(f"unknown --track {kind!r}; choose one of: {', '.join(KINDS)}")

    def log(self, row: dict, step: int) -> None:
        scalars = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
