"""Supervised fine-tuning, written out: Imitation (IL), Implicit World Modelling (IWM), Self-Reflection (SR).

One loss for all three methods: next-token cross-entropy on the assistant tokens only,
  L = -sum_t log p(y_t | x, y_<t)  over the target tokens y (prompt tokens get label -100).
What changes is the data (README, "What the data looks like"):
  IL   (paper 3, the baseline)  --data expert.jsonl                         L_IL  = -log pi(a_i | s_i)
  IWM  (paper 4.2, Eq. 3)       stage 1: --data iwm.jsonl --epochs 1         L_IWM = -log p(s_i^j | s_i, a_i^j)
                                stage 2: --init <stage 1> --data expert.jsonl (the same weights, a fresh optimizer)
  SR   (paper 4.3, Eq. 4)       --data expert.jsonl reflect.jsonl            L_SR  = -log p(c_i, a_i | s_i)
IWM's budget has two readings in the paper: stage 2 = the full imitation budget ("full"), or stage 1 +
stage 2 = the imitation budget in optimizer steps ("matched": give stage 2 --steps = IL steps -
stage-1 steps; when one world-model epoch alone exceeds the budget, run.sh gives each stage half of
it with --steps). run.sh trains both.

Details that matter and are written out below: masks built from token ids (chat.encode_chat; the
end-of-turn token is trained so the model learns to stop); the language-model head is applied only at
target positions (the 49k-word head over ~300 prompt positions would dominate a CPU step);
length-grouped batches (less padding); cosine schedule with warm-up; LoRA by default (--full for all
weights); bf16 compute where the device runs bf16 natively (CUDA from compute capability 8.0; a CPU
with AVX-512-BF16 or AMX: base weights bf16, LoRA weights fp32, autocast), plain fp32 elsewhere
(models.fast_bf16).

More than one process: `torchrun --nproc_per_node N train.py ...` runs the same script under
DistributedDataParallel (gloo on CPU, nccl on GPU). Every process draws the same batches; each takes
its share of every global batch (--batch stays the global batch), so the loss log matches a
single-process run with the same --batch.

Inputs:  chat JSONL files ({"messages": [...]}) from collect.py / iwm.py / reflect.py
Outputs: OUT/ (LoRA adapter or full model, tokenizer, args.json, loss.jsonl); load it with --model OUT;
         with --save-every N also OUT-steps/step-NNNNN/ along the way (budget.py picks the budget from them)
         while it runs, OUT.resume.pt every --resume-every steps: rerun the same command to continue

Examples:
  python train.py --data runs/demo/expert.jsonl --epochs 2 --out runs/demo/ckpt/il
  python train.py --data runs/demo/expert.jsonl --init runs/demo/ckpt/iwm-stage1 --epochs 2 --out runs/demo/ckpt/iwm
  torchrun --nproc_per_node 2 train.py --data runs/demo/expert.jsonl --epochs 2 --out runs/demo/ckpt/il
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from rich.console import Console
from rich.text import Text
from tqdm import tqdm

import chat
import checkpoint
import common
import models
import tracking


def parse_args(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", required=True, help="chat JSONL files, concatenated and shuffled")
    p.add_argument("--model", default=models.EMBEDDED, help="base model (ignored with --init)")
    p.add_argument("--init", default=None, help="continue from this checkpoint with a fresh optimizer")
    p.add_argument("--out", default=None, help="checkpoint folder to write (required unless --export)")
    p.add_argument("--epochs", type=common.at_least(0, float, strict=True, high=1e4), default=2, help="passes over the data (ignored if --steps > 0)")
    p.add_argument("--steps", type=common.at_least(0), default=0, help="optimizer steps (overrides --epochs)")
    p.add_argument("--batch", type=common.at_least(1), default=8, help="examples per optimizer step")
    p.add_argument("--micro-batch", type=common.at_least(0), default=0, help="examples per forward pass (0 = --batch); gradient accumulation")
    p.add_argument("--lr", type=common.at_least(0, float, strict=True), default=2e-4, help="peak learning rate (LoRA; use ~1e-5 with --full)")
    p.add_argument("--warmup", type=common.at_least(0, float, high=1), default=0.05, help="warm-up as a fraction of the steps (cosine)")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="cosine: warm-up, then decay to 0 at the last step (the run's length shapes every step); "
                        "constant: warm-up, then the peak rate throughout, so the checkpoint at step N is a run of N steps")
    p.add_argument("--warmup-steps", type=common.at_least(0), default=None,
                   help="warm-up in steps (default: --warmup x steps with cosine, 0 with constant, which needs a count "
                        "that does not depend on the run's length)")
    p.add_argument("--continue-from", default=None, metavar="STATE",
                   help="constant schedule: continue the run whose state.pt this is (a checkpoint of it, same setting) "
                        "up to --steps; the result equals one run of --steps steps")
    p.add_argument("--lora-r", type=common.at_least(1), default=16, help="LoRA rank")
    p.add_argument("--lora-alpha", type=common.at_least(1), default=32, help="LoRA alpha")
    p.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    p.add_argument("--max-len", type=common.at_least(8), default=4096, help="cut examples to this many tokens (bfcl states reach ~1,300)")
    p.add_argument("--seed", type=common.at_least(0), default=0, help="random seed (shuffling, LoRA init)")
    p.add_argument("--threads", type=common.at_least(0), default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--dtype", default="auto", help="weights: auto (bf16 where it is faster than fp32 here: native bf16 CPU flags or CUDA, models.fast_bf16), bf16, fp32")
    p.add_argument("--attn", choices=["auto", "eager", "sdpa"], default="auto",
                   help="attention kernel: auto = plain matmul (eager) on CPU, the fused default (sdpa) on GPU")
    p.add_argument("--save-every", type=common.at_least(0), default=0,
                   help="also save the checkpoint every N steps to OUT-steps/step-NNNNN (budget.py evaluates them on dev)")
    p.add_argument("--resume-every", type=common.at_least(0), default=None,
                   help="write OUT.resume.pt every N steps, so a killed run continues where it stopped "
                        "(default 25 with LoRA; 0 = never, the default with --full, where it holds the whole model)")
    p.add_argument("--track", default="none", choices=["none", "tensorboard", "wandb"], help="none, tensorboard (event files in OUT-tb/) or wandb (offline): tracking.py")
    p.add_argument("--export", default=None, metavar="FILE",
                   help="instead of training: write the --data examples as one prompt/completion JSONL for TRL, then exit")
    p.add_argument("--show-mask", type=common.at_least(0), default=0, help="print N examples with trained tokens coloured, then exit")
    args = p.parse_args(argv)
    if not args.out and not args.export and not args.show_mask:
        p.error("--out is required")
    if args.resume_every is None:
        args.resume_every = 0 if args.full else 25
    if args.continue_from and args.schedule != "constant":
        p.error("--continue-from needs --schedule constant (a cosine run's steps depend on its length)")
    if args.continue_from and args.steps <= 0:
        p.error("--continue-from needs --steps (the step to continue to)")
    return args


# ---------------------------------------------------------------------------------------------
# Data
def load_examples(tok, paths: list[str], max_len: int) -> list[dict]:
    """Encode every chat example; one clear error names the file and line of a bad one."""
    examples = []
    for path in paths:
        for n, row in enumerate(common.read_jsonl(path, require=common.CHAT), 1):
            tools = row.get("tools")
            if isinstance(tools, str):  # the authors' files and datasets often hold the schemas as a JSON string
                try:
                    tools = json.loads(tools)
                except json.JSONDecodeError:
                    raise common.UserError(f"{path}:{n}: 'tools' is a string but not JSON") from None
            if tools is not None and not isinstance(tools, list):
                raise common.UserError(f"{path}:{n}: 'tools' must be a list of function schemas")
            try:
                ids, labels = chat.encode_chat(tok, row["messages"], max_len, tools=tools)
            except common.UserError as e:
                raise common.UserError(f"{path}:{n}: {e}") from None
            examples.append({"ids": ids, "labels": labels, "source": Path(path).name})
    if not examples:
        raise common.UserError(f"no training examples in {', '.join(paths)}")
    return examples


def export_rows(paths: list[str]) -> list[dict]:
    """The training rows of several files in one shape, so that one `datasets.load_dataset("json", ...)`
    reads them together (expert.jsonl, iwm.jsonl and reflect.jsonl keep different extra columns):
    {"id", "source", "prompt": the messages before the last one, "completion": [the last, assistant,
    message]} and "tools" where a row has them. TRL's SFTTrainer trains on exactly the completion, as
    train.py does (tests/test_interop.py compares the masks)."""
    rows = []
    for path in paths:
        for n, row in enumerate(common.read_jsonl(path), 1):
            msgs = row.get("messages")
            if not isinstance(msgs, list) or not msgs or not isinstance(msgs[-1], dict) or msgs[-1].get("role") != "assistant":
                raise common.UserError(f"{path}:{n}: the last message must be the assistant's answer to export it")
            if any(isinstance(m, dict) and m.get("role") == "assistant" for m in msgs[:-1]):
                raise common.UserError(f"{path}:{n}: several assistant turns; a prompt/completion row trains only the last")
            out = {"id": str(row.get("id", f"{Path(path).stem}:{n}")), "source": Path(path).name,
                   "prompt": msgs[:-1], "completion": msgs[-1:]}
            if row.get("tools") is not None:
                out["tools"] = row["tools"] if isinstance(row["tools"], str) else json.dumps(row["tools"])
            rows.append(out)
    return rows


# The resume point: a killed run continues at the step after the last one written and makes the same
# steps as an uninterrupted run (the same batches, weights, optimizer state and schedule).
RESUME_SETTING = ("data", "model", "init", "epochs", "steps", "batch", "micro_batch", "lr", "warmup", "lora_r",
                  "lora_alpha", "full", "max_len", "seed", "dtype", "attn", "save_every", "schedule", "warmup_steps")
# A constant-schedule run continued to more steps: everything but its length must be the same
CONTINUE_SETTING = tuple(k for k in RESUME_SETTING if k not in ("epochs", "steps", "save_every"))
STATE_FILE = "state.pt"  # in a constant-schedule checkpoint: what --continue-from needs


def resume_path(out: Path) -> Path:
    return out.parent / f"{out.name}.resume.pt"


def length_grouped_batches(examples: list[dict], batch: int, rng: random.Random) -> list[list[int]]:
    """One epoch of batches: shuffle, sort by length inside windows of 64 batches (less padding),
    then shuffle the batches so the order is not long-to-short."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    window = batch * 64
    batches = []
    for start in range(0, len(order), window):
        part = sorted(order[start: start + window], key=lambda i: len(examples[i]["ids"]))
        batches += [part[j: j + batch] for j in range(0, len(part), batch)]
    rng.shuffle(batches)
    return batches


# ---------------------------------------------------------------------------------------------
# Loss
def loss_module(model):
    """target_logprobs as a torch module: DistributedDataParallel synchronises the gradients of what
    runs through its forward, so the loss (not only the model) must be inside the wrapped module."""
    class TargetLogprobs(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, ids, mask, labels):
            return chat.target_logprobs(self.model, ids, mask, labels)[0]

    return TargetLogprobs(model)


def sft_loss_sum(model, ids, mask, labels):
    """Summed negative log-likelihood of the target tokens (divide by the step's token count)."""
    logp, _ = chat.target_logprobs(model, ids, mask, labels)
    return -logp.sum()


def full_logits_loss(model, ids, mask, labels):
    """The textbook version (logits at every position), for the test that checks target_logprobs."""
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=chat.IGNORE, reduction="sum")


def micro_batches(batch: list, rank: int, world: int, micro: int) -> list[tuple[list, float]]:
    """This process's micro-batches of one global batch, as (examples, weight). Process r takes
    examples r, r + world, ... and cuts them into micro-batches of at most `micro`. Every process
    gets the same number of micro-batches, ceil(ceil(len(batch) / world) / micro), because under
    DDP each backward pass is a collective call: a process short of examples runs its missing
    micro-batches on one example with weight 0 (its gradient is zero; the all-reduce still pairs up)."""
    mine = batch[rank::world]
    count = max(1, math.ceil(math.ceil(len(batch) / world) / micro))
    parts = [(mine[i * micro: (i + 1) * micro], 1.0) for i in range(count)]
    return [(part, w) if part else (batch[:1], 0.0) for part, w in parts]


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Multiplier of the peak learning rate: linear warm-up, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def lr_multiplier(step: int, total: int, warmup: int, schedule: str) -> float:
    """cosine (above), or constant: the same linear warm-up, then 1. A constant schedule does not
    read `total`, so step s of a long run is step s of any shorter one: a checkpoint saved at step N
    (--save-every) is exactly a run of N steps, which is what budget.py's rule needs (the budget it
    reads is the budget the arms get), and a run continued from it (--continue-from) is exactly a
    longer run."""
    if schedule == "constant":
        return (step + 1) / (warmup + 1) if step < warmup else 1.0
    return cosine_lr(step, total, warmup)


def warmup_steps(args, total: int) -> int:
    if args.warmup_steps is not None:
        return args.warmup_steps
    return 0 if args.schedule == "constant" else int(args.warmup * total)


# ---------------------------------------------------------------------------------------------
def show_mask(tok, examples: list[dict], n: int) -> None:
    """Print examples with the trained tokens in green (what the loss sees) and the rest dimmed."""
    console = Console()
    for e in examples[:n]:
        text = Text()
        for t, lab in zip(e["ids"], e["labels"]):
            piece = tok.decode([t])
            text.append(piece, style="bold green" if lab != chat.IGNORE else "dim")
        trained = sum(lab != chat.IGNORE for lab in e["labels"])
        console.print(text)
        console.print(f"[b]{trained} trained tokens of {len(e['ids'])}[/b] ({e['source']})\n")


def build_model(args, device=None):
    """The model to train: a fresh LoRA adapter (or all weights with --full) over the base, or the
    checkpoint given by --init with its adapter left trainable."""
    dtype = "fp32" if args.full else args.dtype  # full fine-tuning keeps fp32 master weights
    if args.init:
        model, tok = models.load_model(args.init, dtype=dtype, trainable=True, device=device)
        cfg = Path(args.init) / "adapter_config.json"

        base_name = (checkpoint.base_alias(Path(args.init)) or json.loads(cfg.read_text())["base_model_name_or_path"]
                     if cfg.exists() else args.init)
    else:
        model, tok = models.load_model(args.model, dtype=dtype, device=device)
        base_name = args.model
        if not args.full:
            torch.manual_seed(args.seed)
            model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0,
                                                     target_modules="all-linear", task_type="CAUSAL_LM"))
    attn = args.attn if args.attn != "auto" else ("eager" if model.device.type == "cpu" else "sdpa")
    # PyTorch's CPU flash-attention backward is slow: plain matmul attention trains faster on CPU
    # (bench/train_speed.py --with-sdpa measures it); on CUDA the fused kernels win, so they stay.
    model.set_attn_implementation(attn)
    return model, tok, base_name


def setup_distributed():
    """(rank, world size, device). torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; a plain
    `python train.py` is rank 0 of 1 and never touches torch.distributed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device, backend = f"cuda:{local}", "nccl"
    else:
        device, backend = "cpu", "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), world, device


def main(argv=None):
    args = parse_args(argv)
    if args.init:
        checkpoint.check_checkpoint(args.init)  # a damaged checkpoint: one line, before any work
    n_rows = 0
    for path in args.data:  # the rows' shape before the model loads (load_examples then encodes them)
        rows = common.read_jsonl(path, require=common.CHAT)
        common.check_chat_rows(path, rows)
        n_rows += len(rows)
    if not n_rows:  # one empty file among others is fine (SR's reflections when none was kept)
        raise common.UserError(f"no training examples in {', '.join(args.data)}")
    out = Path(args.out or args.export or ".")
    out.parent.mkdir(parents=True, exist_ok=True)
    # an interrupted run's resume point, read (and refused if damaged or of another setting) before
    # any model loads; restored below once the model and optimizer exist
    saved = checkpoint.load_resume_point(resume_path(out), args, RESUME_SETTING) if not (args.export or args.show_mask) else None
    rank, world, device = setup_distributed()
    common.set_threads(args.threads or max(1, common.usable_cores() // world))  # share the cores
    common.set_seed(args.seed)
    model, tok, base_name = build_model(args, device)
    card_base = models.base_provenance(base_name)  # what the base is, for each checkpoint's model card
    examples = load_examples(tok, args.data, args.max_len)  # every row checked, whatever follows
    if args.export:
        rows = export_rows(args.data)
        common.write_jsonl(args.export, rows)
        print(f"wrote {len(rows)} prompt/completion rows to {args.export}")
        return
    if args.show_mask:
        show_mask(tok, examples, args.show_mask)
        return
    if rank == 0:
        common.lock_output(out.parent, f"train-{out.name}")
        checkpoint.recover_checkpoint(out)  # a save a kill interrupted: finished or rolled back
        checkpoint.remove_stale_temps(resume_path(out))
        models.note_dtype(args)
        common.save_args(args, out.parent, f"{out.name}.args.json")
    if args.batch < world:
        raise common.UserError(f"--batch {args.batch} is smaller than the {world} processes")
    device = model.device
    micro = args.micro_batch or args.batch
    rng = random.Random(args.seed)  # the same on every process: all draw the same global batches
    per_epoch = math.ceil(len(examples) / args.batch)
    total = args.steps if args.steps > 0 else max(1, round(args.epochs * per_epoch))
    warmup = warmup_steps(args, total)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise common.UserError("no trainable parameters")
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, total, warmup, args.schedule))
    autocast = models.train_autocast(model)
    scaler = models.grad_scaler(model)  # fp16 only (older CUDA cards); otherwise every call is a no-op
    loss_fn = loss_module(model)
    if world > 1:
        # DDP averages gradients over processes; each process divides its summed loss by the global
        # batch's target count and multiplies by `world`, so the average is the single-process gradient.
        loss_fn = torch.nn.parallel.DistributedDataParallel(loss_fn, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()

    tracker = tracking.Tracker(args.track if rank == 0 else "none", out.parent / f"{out.name}-tb", vars(args), out.name)
    log, batches, t0, tokens_seen, first = [], [], time.time(), 0, 0
    state = saved
    if not state and args.continue_from:  # a shorter constant-schedule run of the same setting, continued
        state = checkpoint.load_resume_point(args.continue_from, args, CONTINUE_SETTING, what="another run to continue")
        if state is None:
            raise common.UserError(f"--continue-from {args.continue_from}: no such state file")
        if state["step"] > total:
            raise common.UserError(f"--continue-from {args.continue_from}: it is at step {state['step']}, past --steps {total}")
    if state:  # an interrupted run: its weights, optimizer, schedule, batch order and log
        checkpoint.restore_weights(model, state["weights"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        batches, log, tokens_seen, first = state["batches"], state["log"], state["tokens_seen"], state["step"]
        t0 -= state["seconds"]
        if rank == 0:
            print(f"resuming {out} after step {first} of {total} ({resume_path(out).name})")
    def train_state() -> dict:  # everything the next step depends on (a resume point, a continuation)
        return {"step": len(log), "weights": checkpoint.trainable_weights(model), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "rng": rng.getstate(), "torch_rng": torch.get_rng_state(), "batches": batches, "log": log,
                "tokens_seen": tokens_seen, "seconds": time.time() - t0}

    bar = tqdm(range(first, total), desc=f"train {out.name}", disable=rank != 0, initial=first, total=total)
    for step in bar:
        if not batches:
            batches = length_grouped_batches(examples, args.batch, rng)
        batch = [examples[i] for i in batches.pop(0)]
        n_target = sum(sum(lab != chat.IGNORE for lab in e["labels"][1:]) for e in batch)  # global
        loss_total, tokens = 0.0, 0
        parts = micro_batches(batch, rank, world, micro)
        for i, (part, weight) in enumerate(parts):  # gradient accumulation over micro-batches
            ids, labels, mask = chat.collate(part, tok.pad_token_id, device)
            # DDP all-reduces the gradients at every backward unless told not to: only the last
            # micro-batch syncs, and every rank runs as many as the others (micro_batches), so the
            # all-reduces pair up (unequal counts hang the processes)
            sync = world == 1 or i == len(parts) - 1
            with (contextlib.nullcontext() if sync else loss_fn.no_sync()), autocast:
                loss = -loss_fn(ids, mask, labels).sum() / n_target * weight * world
            scaler.scale(loss).backward()
            loss_total += loss.item() / world
            tokens += int(mask.sum()) if weight else 0
        if world > 1:  # the logged loss and token count of the whole global batch
            stats = torch.tensor([loss_total, tokens], dtype=torch.float64, device=device)
            dist.all_reduce(stats)
            loss_total, tokens = stats[0].item(), int(stats[1].item())
        if not math.isfinite(loss_total):  # diverged (a learning rate far too high): nothing worth saving
            raise common.UserError(f"step {step + 1}: the loss is {loss_total} (the run diverged; lower --lr {args.lr}); "
                                   f"nothing saved to {out}")
        tokens_seen += tokens
        scaler.unscale_(opt)  # fp16: the true gradients, before clipping (a no-op without scaling)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(opt)  # fp16: skipped when a gradient overflowed (the scale then shrinks)
        scaler.update()
        sched.step()
        opt.zero_grad(set_to_none=True)
        rate = tokens_seen / (time.time() - t0)
        row = {"step": step + 1, "loss": round(loss_total, 5), "lr": sched.get_last_lr()[0],
               "target_tokens": n_target, "tokens": tokens, "tokens_per_s": round(rate, 1)}
        if device.type == "cuda":  # the most GPU memory held so far: what --batch / --micro-batch cost
            row["peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        log.append(row)
        tracker.log(row, step + 1)
        bar.set_postfix(loss=f"{loss_total:.3f}", tok_s=f"{rate:.0f}")
        if rank == 0 and args.save_every and (step + 1) % args.save_every == 0 and step + 1 < total:
            steps_dir = out.parent / f"{out.name}-steps"  # the imitation learning curve, for budget.py
            steps_dir.mkdir(exist_ok=True)
            folder = steps_dir / f"step-{step + 1:05d}"
            checkpoint.save_checkpoint(model, tok, args, base_name, log, folder, provenance=card_base)
            if args.schedule == "constant":  # the point can be continued (train.py --continue-from)
                checkpoint.save_resume_point(folder / STATE_FILE, args, RESUME_SETTING, train_state())
        if rank == 0 and args.resume_every and (step + 1) % args.resume_every == 0 and step + 1 < total:
            checkpoint.save_resume_point(resume_path(out), args, RESUME_SETTING, train_state())
    tracker.close()
    if rank == 0:
        checkpoint.save_checkpoint(model, tok, args, base_name, log, out, provenance=card_base)
        if args.schedule == "constant":
            checkpoint.save_resume_point(out / STATE_FILE, args, RESUME_SETTING, train_state())
        resume_path(out).unlink(missing_ok=True)  # finished: only the checkpoint stays
        print(f"saved {out} ({total} steps, {len(examples)} examples, final loss {log[-1]['loss']:.3f}, "
              f"{time.time() - t0:.0f} s, {world} process{'es' if world > 1 else ''})")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    common.run_main(main)
