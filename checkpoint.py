"""Checkpoints: everything written to, checked in and read from a checkpoint folder.

* Saving: a checkpoint is written to a temporary folder and swapped in so that a complete one exists
  at every instant (save_checkpoint, recover_checkpoint); check_checkpoint refuses a damaged one with
  one line before any work.
* Resume points: an interrupted train.py or rl.py run continues from its last resume point, of the
  same setting only (save_resume_point, load_resume_point).
* The base: a checkpoint's adapter_config.json names its base by the name this repository resolves on
  any machine (`smollm2-135m`, `tiny-random`, a Hub id, or a folder as it was given), never a folder of
  one machine's cache; base_model.json repeats that name (base_alias). A Hub-id base also loads with
  plain peft; for the others, merge.py writes the portable form (one full model folder that plain
  transformers loads) with merged_card as its README.
* The model card replaces peft's empty template with what train.py knows (the method, the data, the
  steps, the final loss) and gains a line per evaluation (evaluate.py calls add_evaluation).

Loading a checkpoint is models.load_model; this module imports nothing of the project but common.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open

from common import UserError, write_atomic, write_atomic_with

ALIAS_FILE = "base_model.json"
EVAL_START, EVAL_END = "<!-- evaluations -->", "<!-- /evaluations -->"


# ---------------------------------------------------------------------------------------------
# Saving and checking checkpoints
def check_checkpoint(name) -> None:
    """A checkpoint folder (train.py's or rl.py's: a LoRA adapter) holds what loading it needs, and
    each piece reads: adapter_config.json (JSON naming the base), the adapter weights (a safetensors
    file whose header reads), the tokenizer. One line naming what is missing or damaged, before any
    work; a name that is not such a folder passes (a model name, a full model folder)."""
    path = Path(name)
    config = path / "adapter_config.json"
    if not (path.is_dir() and config.exists()):
        return
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
        if not isinstance(cfg, dict) or not isinstance(cfg.get("base_model_name_or_path"), str):
            raise ValueError("no base_model_name_or_path")
        alias = path / "base_model.json"
        if alias.exists():
            json.loads(alias.read_text(encoding="utf-8"))["alias"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: damaged checkpoint: adapter_config.json or base_model.json does not read ({e})") from None
    weights = path / "adapter_model.safetensors"
    if not weights.exists():
        raise UserError(f"{path}: damaged checkpoint: adapter_model.safetensors is missing")
    try:
        with safe_open(str(weights), framework="pt") as f:
            names = list(f.keys())
            for key in names:  # each tensor's bytes are there (a truncated file fails here)
                f.get_slice(key)
        if not names:
            raise ValueError("no tensors")
    except Exception as e:
        raise UserError(f"{path}: damaged checkpoint: adapter_model.safetensors does not read "
                        f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"{path}: damaged checkpoint: no tokenizer files (tokenizer.json, tokenizer_config.json)")


def recover_checkpoint(out: Path) -> None:
    """Finish or roll back a checkpoint swap that a kill interrupted (save_checkpoint's order: the new
    folder is written aside, the old one renamed to .NAME.old, the new one renamed in, the old one
    deleted): with OUT missing and .NAME.old there, the old checkpoint goes back; with both there,
    the swap was done and .NAME.old goes. Temporary folders of an unfinished write (.NAME.XXXX) go
    too. Called before a checkpoint is written or loaded: at every instant one complete checkpoint
    exists, the old or the new."""
    out = Path(out)
    old = out.parent / f".{out.name}.old"
    if old.exists():
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, out)
    for tmp in out.parent.glob(f".{out.name}.*"):
        if tmp.is_dir() and tmp.name != old.name and len(tmp.name) == len(out.name) + 10:  # mkdtemp's 8 characters
            shutil.rmtree(tmp, ignore_errors=True)


def save_checkpoint(model, tok, args, base_name: str, log: list[dict], out: Path, adapter: str | None = None,
                    provenance: tuple | None = None) -> None:
    """Write to a temporary folder, then swap it in so that a complete checkpoint exists at every
    instant (recover_checkpoint finishes a swap a kill interrupted); a full disk or an error while
    writing leaves the previous checkpoint as it was and no temporary folder. adapter: the one
    LoRA adapter to save when the model holds several (rl.py's "rl" over a frozen start adapter).
    provenance: models.base_provenance(base_name), for the model card (train.py's checkpoints)."""
    recover_checkpoint(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        _write_checkpoint(model, tok, args, base_name, log, tmp, adapter, provenance)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old"
    if out.exists():
        os.replace(out, old)  # from here until the next rename, the old checkpoint is .NAME.old
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _write_checkpoint(model, tok, args, base_name: str, log: list[dict], tmp: Path, adapter: str | None,
                      provenance: tuple | None = None) -> None:
    # the base by the name this repository resolves on any machine (smollm2-135m, tiny-random, a Hub id,
    # the folder as given): never the converted folder in one machine's cache. Plain peft resolves a Hub
    # id on its own; for our aliases, merge.py writes the portable full model.
    if hasattr(model, "peft_config"):
        adapter = adapter or "default"
        model.peft_config[adapter].base_model_name_or_path = base_name
        # no hub look-up for the base's config; peft puts an adapter not named "default" in a subfolder
        model.save_pretrained(tmp, save_embedding_layers=False, selected_adapters=[adapter])
        if adapter != "default":
            for f in (tmp / adapter).iterdir():
                f.rename(tmp / f.name)
            (tmp / adapter).rmdir()
    else:
        model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n")
    (tmp / "loss.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    (tmp / ALIAS_FILE).write_text(json.dumps({"alias": base_name}) + "\n")
    if provenance is not None:  # train.py's checkpoints (rl.py writes its own record: args.json, curve)
        write_card(tmp, args, log, *provenance)


# ---------------------------------------------------------------------------------------------
# Resume points
def trainable_weights(model) -> dict:
    """The weights the optimizer moves (a LoRA adapter, or every weight with --full), on the CPU: what a
    resume point stores."""
    return {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}


def restore_weights(model, weights: dict) -> None:
    """Put weights saved by trainable_weights back into the model, in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w)


def save_resume_point(path, args, keys: tuple, state: dict) -> None:
    """Write a resume point (torch.save of `state` plus the run's setting, the args named by `keys`)
    atomically: the old one or the new one, never half of one. train.py and rl.py use it."""
    state = {**state, "setting": {k: getattr(args, k) for k in keys}}
    write_atomic_with(path, lambda tmp: torch.save(state, tmp))


def remove_stale_temps(path) -> None:
    """Temporary files of an atomic write of PATH that a kill left behind (.NAME.XXXXXXXX, see
    write_atomic_with). Call it holding the output's lock (lock_output): no other writer is at work."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*"):
        if tmp.is_file() and len(tmp.name) == len(path.name) + 10:
            tmp.unlink(missing_ok=True)


def load_resume_point(path, args, keys: tuple, what: str = "an interrupted run") -> dict | None:
    """The state an interrupted run of the same setting left at PATH, or None for a fresh run. A
    resume point of another setting is refused (one line), never silently continued."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=False)
        if not isinstance(state, dict) or not isinstance(state.get("setting"), dict):
            raise ValueError("not a resume point")
    except Exception as e:  # cut short, overwritten, not ours: refused by name, never half-read
        raise UserError(f"{path}: damaged ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        "delete it to start that run over") from None
    now = {k: getattr(args, k) for k in keys}
    diff = [k for k in now if state["setting"].get(k) != now[k]]
    if diff:
        raise UserError(f"{path} is {what} of another setting ({', '.join(diff)} differ): "
                        "use another --out or delete it")
    return state


# ---------------------------------------------------------------------------------------------
# The base and the model card
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
    base_line: what the base is (both from models.base_provenance)."""
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
    write_atomic(card, head + EVAL_START + "\n".join(body) + EVAL_END + tail)
    return True


def merged_card(ckpt: Path, public: str | None, line: str, dtype: str) -> str:
    """README.md of merge.py's full model folder: what it is, how to load it, and the checkpoint's own card
    (what was trained, how it scored). public, line: models.base_provenance of the base."""
    head = ["---", *([f"base_model: {public}"] if public else []), "library_name: transformers",
            "tags:", "- early-experience", "- agent", "---", ""]
    body = [f"# {ckpt.name}, merged", "",
            f"The checkpoint `{ckpt.name}` of early-experience (a reimplementation of *Agent Learning via Early "
            "Experience*, Zhang et al., arXiv 2510.08558) with its LoRA adapter(s) added into the base weights "
            f"by merge.py (in fp32, stored as {dtype}).", "", f"Base: {line}.", "",
            "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f'model = AutoModelForCausalLM.from_pretrained("{ckpt.name}-merged")',
            f'tok = AutoTokenizer.from_pretrained("{ckpt.name}-merged")', "```", ""]
    old = ckpt / "README.md"
    if old.exists():  # what was trained and how it scored, as the checkpoint's own card says
        text = old.read_text(encoding="utf-8")
        start, end = text.find("| | |"), text.find("## Load it")
        if start >= 0 and end > start:
            body += ["## The checkpoint's card", "", text[start:end].rstrip(), ""]
    return "\n".join(head + body)
