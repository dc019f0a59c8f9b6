"""Checkpoint metadata: the base a checkpoint stands on, and its model card (README.md).

A checkpoint's adapter_config.json names its base by the name this repository resolves on any machine
(`smollm2-135m`, `tiny-random`, a Hub id, or a folder as it was given), never a folder of one machine's
cache; base_model.json repeats that name (older checkpoints stored a cache path in the adapter and the
alias there, and still load). A Hub-id base also loads with plain peft; for the others, merge.py
writes the portable form: one full model folder that plain transformers loads.

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


def write_card(folder: Path, args, log: list[dict], public_base: str | None, base_line: str) -> None:
    """README.md of a checkpoint: a YAML header peft and the hub read, then what was trained.
    public_base: the Hub model the base derives from (None: none, e.g. the tiny test model);
    base_line: what the base is (models.base_provenance)."""
    n = {Path(d).name: sum(1 for x in open(d, encoding="utf-8") if x.strip()) for d in args.data if Path(d).exists()}
    full = getattr(args, "full", False)
    kind = "all weights" if full else f"LoRA r={args.lora_r}, alpha={args.lora_alpha}, every linear layer"
    lines = [
        "---", *([f"base_model: {public_base}"] if public_base else []),
        "library_name: peft" if not full else "library_name: transformers",
        "tags:", "- early-experience", "- agent", "---", "",
        f"# {folder.name}: {method_of(args)}", "",
        "Fine-tuned by `train.py` of early-experience, a reimplementation of *Agent Learning via Early "
        "Experience* (Zhang et al., arXiv 2510.08558).", "",
        "| | |", "|---|---|",
        f"| method | {method_of(args)} |",
        f"| base | {base_line} |",
        *([f"| started from | `{args.init}` |"] if args.init else []),
        f"| data | {', '.join(f'{k} ({v} examples)' for k, v in n.items())} |",
        f"| weights trained | {kind} |",
        f"| optimizer steps | {len(log)} (batch {args.batch}, peak lr {args.lr}, seed {args.seed}) |",
        f"| final loss | {log[-1]['loss'] if log else 'n/a'} |", "",
        "## Evaluations", "", EVAL_START, "| split | mode | episodes | success | 95% interval | score |",
        "|---|---|---|---|---|---|", EVAL_END, "",
        "## Load it", "",
        f"With the repository's scripts: `python evaluate.py --model PATH/TO/{folder.name}` (models.load_model "
        "resolves the base by its name on any machine). Anywhere else, "
        + ("merge the adapter into one full model folder first, then load that with plain transformers:"
           if not full else "load it with plain transformers:"), "", "```python",
        *([f"# python merge.py --ckpt PATH/TO/{folder.name} --out {folder.name}-merged"] if not full else []),
        "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        f'model = AutoModelForCausalLM.from_pretrained("{folder.name}{"" if full else "-merged"}")',
        f'tok = AutoTokenizer.from_pretrained("{folder.name}{"" if full else "-merged"}")', "```", "",
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
