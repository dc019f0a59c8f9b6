"""Checkpoint metadata: the base a checkpoint stands on, and its model card (README.md).

A checkpoint's adapter_config.json names its base by a path or hub id that plain peft resolves
(`AutoPeftModelForCausalLM.from_pretrained(ckpt)` works): for the embedded model and the tiny test
model, the converted folder in the local cache. Our own name for the base (the alias, e.g.
`smollm2-135m`) is kept in base_model.json beside it, so that models.load_model still finds the base
when the checkpoint moves to a machine whose cache lies elsewhere.

The model card replaces peft's empty template with what train.py knows (the method, the data, the
steps, the final loss) and gains a line per evaluation (evaluate.py calls add_evaluation).
"""
from __future__ import annotations

import json
from pathlib import Path

ALIAS_FILE = "base_model.json"
EVAL_START, EVAL_END = "<!-- evaluations -->", "<!-- /evaluations -->"


def base_alias(ckpt: Path) -> str | None:
    """Our name for the checkpoint's base, if it was written by train.py."""
    f = Path(ckpt) / ALIAS_FILE
    return json.loads(f.read_text())["alias"] if f.exists() else None


def method_of(args) -> str:
    """The paper's method a train.py run implements, read from its data files (run.sh's naming)."""
    names = [Path(d).name for d in args.data]
    if names == ["expert.jsonl"]:
        return "IWM stage 2 (imitation after world modelling)" if args.init else "IL (imitation)"
    if names == ["iwm.jsonl"]:
        return "IWM stage 1 (world modelling)"
    if set(names) == {"iwm.jsonl", "expert.jsonl"}:
        return "IWM mixed with imitation in one stage"
    if set(names) == {"expert.jsonl", "reflect.jsonl"}:
        return "SR (imitation + self-reflection)"
    return "supervised fine-tuning on " + ", ".join(names)


def write_card(folder: Path, args, log: list[dict], base_ref: str) -> None:
    """README.md of a checkpoint: a YAML header peft and the hub read, then what was trained."""
    n = {Path(d).name: sum(1 for x in open(d, encoding="utf-8") if x.strip()) for d in args.data if Path(d).exists()}
    kind = "all weights" if getattr(args, "full", False) else f"LoRA r={args.lora_r}, alpha={args.lora_alpha}, every linear layer"
    lines = [
        "---", f"base_model: {base_ref}", "library_name: peft" if not getattr(args, "full", False) else "library_name: transformers",
        "tags:", "- early-experience", "- agent", "---", "",
        f"# {folder.name}: {method_of(args)}", "",
        "Fine-tuned by `train.py` of early-experience, a reimplementation of *Agent Learning via Early "
        "Experience* (Zhang et al., arXiv 2510.08558).", "",
        "| | |", "|---|---|",
        f"| method | {method_of(args)} |",
        f"| base | `{args.model if not args.init else args.init}` |",
        f"| data | {', '.join(f'{k} ({v} examples)' for k, v in n.items())} |",
        f"| weights trained | {kind} |",
        f"| optimizer steps | {len(log)} (batch {args.batch}, peak lr {args.lr}, seed {args.seed}) |",
        f"| final loss | {log[-1]['loss'] if log else 'n/a'} |", "",
        "## Evaluations", "", EVAL_START, "| split | mode | episodes | success | 95% interval | score |",
        "|---|---|---|---|---|---|", EVAL_END, "",
        "## Load it", "", "```python",
        "from peft import AutoPeftModelForCausalLM" if not getattr(args, "full", False) else "from transformers import AutoModelForCausalLM",
        "from transformers import AutoTokenizer", "",
        (f'model = AutoPeftModelForCausalLM.from_pretrained("{folder.name}")' if not getattr(args, "full", False)
         else f'model = AutoModelForCausalLM.from_pretrained("{folder.name}")'),
        f'tok = AutoTokenizer.from_pretrained("{folder.name}")', "```", "",
        "Or with the repository's scripts: `python evaluate.py --model PATH/TO/" + folder.name + "`.", "",
    ]
    (Path(folder) / "README.md").write_text("\n".join(lines), encoding="utf-8")


def add_evaluation(ckpt: Path, rows: list[dict]) -> bool:
    """Put evaluate.py's summary rows into the checkpoint's card (a row per split and mode, replaced
    by a later evaluation of the same split and mode). False when the folder has no card of ours."""
    card = Path(ckpt) / "README.md"
    if not card.exists():
        return False
    text = card.read_text(encoding="utf-8")
    if EVAL_START not in text or EVAL_END not in text:
        return False
    head, rest = text.split(EVAL_START, 1)
    table, tail = rest.split(EVAL_END, 1)
    old = [ln for ln in table.strip().splitlines()[2:] if ln.startswith("|")]
    keep = {tuple(c.strip() for c in ln.strip("|").split("|")[:2]): ln for ln in old}
    for r in rows:
        lo, hi = r["ci95"]
        keep[(r["split"], r["mode"])] = (f"| {r['split']} | {r['mode']} | {r['n']} | {100 * r['success']:.1f}% | "
                                         f"{100 * lo:.1f}-{100 * hi:.1f}% | {r['score']:.3f} |")
    body = ["", "| split | mode | episodes | success | 95% interval | score |", "|---|---|---|---|---|---|",
            *[keep[k] for k in sorted(keep)], ""]
    from common import write_atomic

    write_atomic(card, head + EVAL_START + "\n".join(body) + EVAL_END + tail)
    return True
