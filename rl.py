"""Reinforcement learning after early experience: GRPO on multi-turn episodes (paper section 5.4).

Start from any checkpoint (IL, IWM, SR, or the untuned model) and improve it with the task's reward.
The paper's claim to check: with the same GRPO recipe and budget, starting from IWM or SR ends higher
than starting from IL.

One update:
  1. rollouts: M training tasks, G episodes each from the same start (a group), sampled at
     temperature 1.0 from the full distribution (no top-k / top-p: agent.decoding_config; the
     log-probabilities of step 4 are those of the untruncated policy, so the sampler must be it),
     all played in lockstep by agent.run_episodes (the loop evaluate.py uses);
  2. reward R: 1 for task success else 0 (or the game's 0-1 score), minus --invalid-penalty per
     invalid action as a fraction of the episode's steps;
  3. advantage A = (R - mean of the group) / (std of the group + eps), one number per episode,
     shared by every action token of every step of that episode. A group whose rewards are all
     equal (all solved, all failed, or G = 1) has A = 0 everywhere and teaches nothing: watch the
     fraction of such groups (zero_std) - if it is near 1, the tasks are too easy or too hard;
  4. loss per action token t (PPO-style; averaged over each answer's tokens, then over each
     episode's steps, then over episodes: --norm episode; --norm answer / token: see update()):
        ratio = exp(logp_t - logp_old_t)
        L = -min(ratio * A, clip(ratio, 1-eps, 1+eps) * A) + beta * k3(logp_ref_t - logp_t)
     with k3(x) = exp(x) - x - 1 >= 0 (an unbiased, always-positive KL estimate). The tokens are
     exactly the assistant answer of each step (chat.encode_chat's mask), the state text is
     the one evaluation uses.

Two choices that decide whether it learns at all (measured on the tiny model, README):
  - --norm episode: each episode weighs its advantage once, spread over its steps (see update());
  - --optim sgd: plain SGD follows the averaged gradient. Adam divides every coordinate by its
    own running scale, so with a gradient estimated from a few dozen episodes the coordinates that
    carry only noise move as far as those that carry signal. Where SGD raised success 67% -> 92%,
    Adam gained less, and unsteadily (full 3e-4: 84%; LoRA 1e-3: 72%).

Why the loss sits near 0 while the model still learns: with one inner epoch, ratio = 1 at the
moment of the gradient, so L = -mean(A) (+ KL = 0); advantages are centred per group, so L ~ 0
whatever the policy does. Its gradient, -mean(A * grad logp), is not zero: it raises the log-
probability of actions in better-than-average episodes and lowers the others. Do not watch the loss;
watch reward and success (up), zero_std (not stuck at 1), kl (small and slowly rising), tokens/s.

LoRA trick for the reference policy: a fresh LoRA adapter ("rl") is trained on top of the start
policy, and the reference policy (for KL) is the same model with that adapter switched off, so no
second copy of the model is needed. When --init is a train.py LoRA checkpoint, its adapter stays
loaded, frozen and active beside "rl" (not merged: merging a LoRA update into bf16 weights rounds
most of it away, models.load_model); the reference is then "start adapter only". The saved
checkpoint is the "rl" adapter over --init, and models.load_model stacks the two again.

One device: rl.py runs in one process (its rollouts and updates alternate). With several GPUs, run
one arm per GPU side by side: `CUDA_VISIBLE_DEVICES=1 python rl.py --init ... --out ...`.
--full trains every weight without a reference copy, so it refuses --kl > 0 (the LoRA route has the
reference for free: the adapter switched off).

Inputs:  --init (a train.py checkpoint or any model); the env's train split
Outputs: OUT/curve.jsonl (one line per update), OUT/ckpt/ (adapter over --init), OUT/args.json;
         --plot RUN_DIRS... draws success vs update of several runs into one PNG

Examples:
  python rl.py --init runs/demo/ckpt/il-s0 --env twx-cooking --updates 50 --group 8 --out runs/demo/rl/il
  python rl.py --plot runs/demo/rl/il runs/demo/rl/iwm runs/demo/rl/sr --out runs/demo/rl/curves.png
"""
from __future__ import annotations

import json
import random
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from matplotlib.figure import Figure
from peft import LoraConfig, PeftModel, get_peft_model
from tqdm import tqdm

import agent
import chat
import checkpoint
import common
import envs
import models
import tracking


def parse_args(argv=None):
    p = common.ArgParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", default=models.EMBEDDED, help="start policy: checkpoint folder or model name")
    p.add_argument("--env", default="twx-cooking", help=f"environment: {', '.join(envs.ENV_NAMES)}")
    p.add_argument("--updates", type=common.at_least(1), default=50, help="policy updates")
    p.add_argument("--tasks-per-update", type=common.at_least(1), default=2, help="M: training tasks per update")
    p.add_argument("--group", type=common.at_least(2), default=8, help="G: episodes per task (a GRPO group)")
    p.add_argument("--train-tasks", type=common.at_least(1), default=200, help="tasks are drawn from the first N of the train split")
    p.add_argument("--temperature", type=common.at_least(0, float, high=100), default=1.0, help="rollout sampling temperature")
    p.add_argument("--reward", choices=["success", "score"], default="success", help="episode reward")
    p.add_argument("--invalid-penalty", type=common.at_least(0, float), default=0.0, help="subtracted x (invalid steps / steps)")
    p.add_argument("--lr", type=common.at_least(0, float, strict=True), default=0.3, help="learning rate: SGD on the LoRA adapter learned at 0.3 on the tiny model (1.0 collapsed it); 0.1 with --full)")
    p.add_argument("--optim", choices=["sgd", "adam"], default="sgd", help="optimizer (docstring: why SGD)")
    p.add_argument("--inner-epochs", type=common.at_least(1), default=1, help="passes over each update's rollouts (>1 uses clipping)")
    p.add_argument("--clip", type=common.at_least(0, float, strict=True), default=0.2, help="PPO clip range")
    p.add_argument("--kl", type=common.at_least(0, float), default=0.0, help="beta: weight of the k3 KL to the start policy")
    p.add_argument("--norm", choices=["episode", "answer", "token"], default="episode",
                   help="loss average: per episode (each counts once), per answer (original GRPO) or per token")
    p.add_argument("--micro-batch", type=common.at_least(1), default=8, help="steps per forward pass")
    p.add_argument("--lora-r", type=common.at_least(1), default=16, help="LoRA rank of the RL adapter")
    p.add_argument("--full", action="store_true", help="train all weights (no KL term: refused with --kl > 0)")
    p.add_argument("--batch", type=common.at_least(1), default=16, help="episodes in lockstep")
    p.add_argument("--max-steps", type=common.at_least(0), default=0, help="episode step limit (0 = the env's default)")
    p.add_argument("--max-new-tokens", type=common.at_least(1), default=24, help="answer length cap")
    p.add_argument("--eval-every", type=common.at_least(0), default=10, help="evaluate on the test split every N updates (0 = never)")
    p.add_argument("--eval-episodes", type=common.at_least(0), default=30, help="test episodes per evaluation (greedy)")
    p.add_argument("--seed", type=common.at_least(0), default=0, help="random seed")
    p.add_argument("--threads", type=common.at_least(0), default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where it is faster than fp32 here: native bf16 CPU flags or CUDA, models.fast_bf16), bf16, fp32")
    p.add_argument("--track", default="none", choices=["none", "tensorboard", "wandb"], help="none, tensorboard (event files in OUT/tb/) or wandb (offline): tracking.py")
    p.add_argument("--plot", nargs="+", default=None, metavar="RUN", help="plot the curves of these rl.py outputs to --out (PNG)")
    p.add_argument("--out", required=True, help="output folder (or PNG file with --plot)")
    args = p.parse_args(argv)
    if args.full and args.kl > 0:
        p.error(f"--full with --kl {args.kl}: full fine-tuning keeps no reference copy of the start policy, "
                "so there is no KL term to add; use LoRA (drop --full) or --kl 0")
    return args


# ---------------------------------------------------------------------------------------------
def group_advantages(rewards: list[float], eps: float = 1e-6) -> list[float]:
    """GRPO: (R - group mean) / (group std + eps), population std. All-equal groups (and G = 1) -> 0."""
    g = len(rewards)
    mean = sum(rewards) / g
    std = (sum((r - mean) ** 2 for r in rewards) / g) ** 0.5
    if std == 0:
        return [0.0] * g
    return [(r - mean) / (std + eps) for r in rewards]


def episode_reward(ep: dict, kind: str, invalid_penalty: float) -> float:
    r = float(ep["success"]) if kind == "success" else float(ep["score"])
    return r - invalid_penalty * ep["invalid"] / max(1, ep["steps"])


def step_examples(tok, episodes: list[dict], advantages: list[float]) -> list[dict]:
    """One training record per step: the state's prompt (rendered exactly as generation saw it)
    followed by the answer's sampled token ids; the mask covers those ids only (with the end-of-turn
    token when the model sampled it; an answer cut by the length cap has none, and gets none).
    Training on the sampled ids, not on the answer re-tokenized from text, keeps the gradient that
    of the policy that acted: text like "ction: coin" re-tokenizes into other tokens than were
    sampled, and their log-probabilities are not the ones the advantage judged."""
    out = []
    for ep, adv in zip(episodes, advantages):
        for step in ep["trajectory"]:
            answer = step.get("answer_ids")
            if answer is None:  # an episode recorded without ids: fall back to the answer's text
                try:
                    ids, labels = chat.encode_chat(tok, step["messages"] + [{"role": "assistant", "content": step["answer"]}])
                except common.UserError:
                    continue  # an empty answer has no token to learn from
            else:
                if not answer:
                    continue
                prompt = tok(chat.render(tok, step["messages"], add_generation_prompt=True),
                             add_special_tokens=False)["input_ids"]
                ids, labels = prompt + list(answer), [chat.IGNORE] * len(prompt) + list(answer)
            out.append({"ids": ids, "labels": labels, "adv": adv, "episode_steps": len(ep["trajectory"])})
    return out


def token_logprobs(model, batch, device):
    """Per-token log-probs of the action tokens (flattened), each token's advantage, and each
    token's weight: the record's answer weight "w" (1 if absent) / (tokens in its answer)."""
    ids, labels, mask = chat.collate(batch, 0, device)
    logp, keep = chat.target_logprobs(model, ids, mask, labels)
    adv = torch.tensor([e["adv"] for e in batch], device=device)[:, None].expand_as(keep)[keep]
    per_answer = keep.sum(1, keepdim=True).clamp(min=1).float()
    w = torch.tensor([e.get("w", 1.0) for e in batch], device=device)[:, None]
    weight = (w / per_answer).expand_as(keep)[keep]
    return logp, adv, weight


def policy_loss(logp, old_logp, ref_logp, adv, clip: float, beta: float, weight=None):
    """PPO-clipped policy gradient + beta * k3 KL, summed over tokens with optional per-token weights
    (the caller divides by the number of tokens or answers)."""
    ratio = torch.exp(logp - old_logp)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv)
    loss = -surrogate
    kl = torch.zeros_like(logp)
    if ref_logp is not None:
        x = ref_logp - logp
        kl = torch.exp(x) - x - 1
        loss = loss + beta * kl
    if weight is not None:
        loss, kl = loss * weight, kl * weight
    return loss.sum(), kl.detach().sum()


# ---------------------------------------------------------------------------------------------
RL_ADAPTER = "rl"


def _activate(model, names: list[str]) -> None:
    """Make these adapters active; only the RL adapter trains (peft marks every active one trainable)."""
    model.base_model.set_adapter(names)
    for n, p in model.named_parameters():
        p.requires_grad = f".{RL_ADAPTER}." in n


def build_policy(args):
    """The start policy plus a fresh trainable LoRA adapter "rl" (or all weights with --full)."""
    model, tok = models.load_model(args.init, dtype="fp32" if args.full else args.dtype)
    if args.full:
        if isinstance(model, PeftModel):
            model = model.merge_and_unload()
        return model, tok
    torch.manual_seed(args.seed)
    config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    if isinstance(model, PeftModel):  # a train.py LoRA checkpoint, kept unmerged: stack "rl" on it
        if len(model.peft_config) > 1:
            raise common.UserError(f"--init {args.init}: start from a train.py checkpoint, not a stacked (rl.py) one")
        model.add_adapter(RL_ADAPTER, config)
        _activate(model, ["default", RL_ADAPTER])
        return model, tok
    return get_peft_model(model, config, adapter_name=RL_ADAPTER), tok


@contextmanager
def reference_policy(model):
    """The start policy, for the KL term: the same model with the RL adapter switched off."""
    stacked = len(getattr(model, "peft_config", {})) > 1
    if not stacked:
        with model.disable_adapter():
            yield
        return
    _activate(model, ["default"])
    try:
        yield
    finally:
        _activate(model, ["default", RL_ADAPTER])


def evaluate_greedy(model, tok, args, pool, split: str = "test") -> float:
    tasks = pool[0].tasks(split)[: args.eval_episodes]
    model.eval()
    eps = list(agent.run_episodes(model, tok, args.env, tasks, batch=args.batch, max_steps=args.max_steps or None,
                                   max_new_tokens=args.max_new_tokens, progress=None, pool=pool))
    return sum(e["success"] for e in eps) / len(eps)


def update(model, tok, opt, episodes: list[dict], args, device, scaler=None) -> dict:
    """One GRPO update from a batch of finished episodes, grouped by task."""
    groups: dict[str, list[dict]] = {}
    for ep in episodes:
        groups.setdefault(ep["task_id"].split("#")[0], []).append(ep)
    flat, advs, rewards, zero = [], [], [], 0
    for eps in groups.values():
        r = [episode_reward(e, args.reward, args.invalid_penalty) for e in eps]
        a = group_advantages(r)
        zero += all(x == 0 for x in a)
        flat += eps
        advs += a
        rewards += r
    records = step_examples(tok, flat, advs)
    if args.kl == 0:  # zero-advantage steps have zero gradient without KL: skip their compute
        records = [x for x in records if x["adv"] != 0]
    stats = {"reward": sum(rewards) / len(rewards), "success": sum(e["success"] for e in flat) / len(flat),
             "zero_std": zero / len(groups), "steps": len(records), "loss": 0.0, "kl": 0.0}
    if not records:
        return stats
    use_ref = args.kl > 0 and not args.full
    autocast = models.train_autocast(model)
    scaler = scaler or models.grad_scaler(model)  # fp16 products only (older CUDA cards); else no-ops
    model.eval()
    # old (and reference) log-probs, computed exactly as the new ones are (same autocast): in bf16 the
    # two routes can differ by a few hundredths of a nat, enough to push ratios out of the clip range
    with torch.no_grad(), autocast:
        for i in range(0, len(records), args.micro_batch):
            part = records[i: i + args.micro_batch]
            old, _, _ = token_logprobs(model, part, device)
            sizes = [sum(x != chat.IGNORE for x in e["labels"][1:]) for e in part]
            ref = None
            if use_ref:
                with reference_policy(model):
                    ref, _, _ = token_logprobs(model, part, device)
            for e, o, r in zip(part, old.split(sizes), (ref.split(sizes) if ref is not None else [None] * len(part))):
                e["old"], e["ref"] = o, r
    model.train()
    # How the tokens are averaged (--norm) matters more than it looks in multi-turn episodes:
    # "episode" (default): each episode counts once: the mean over its steps of each answer's mean
    #   token term. A failed episode often has more steps than a solved one (it runs to the step
    #   limit); summed per step, the tokens every answer shares ("Action:", the end-of-turn token)
    #   would get a net negative push from the longer failed episodes, and the policy unlearns its
    #   own format. Weighting steps by 1/steps makes each episode's total weight its advantage,
    #   which sums to 0 over a group, so shared tokens get no net push.
    # "answer": each step's answer counts once (the original single-turn GRPO, applied per step);
    # "token": every token counts once (long answers weigh more; 24-token garbage outweighs a
    #   5-token valid action).
    n_tokens = sum(len(e["old"]) for e in records)
    for e in records:
        e["w"] = 1.0 / e["episode_steps"] if args.norm == "episode" else 1.0
    denom = {"episode": len(flat), "answer": len(records), "token": n_tokens}[args.norm]
    for _ in range(args.inner_epochs):
        total, kl_total = 0.0, 0.0
        for i in range(0, len(records), args.micro_batch):
            part = records[i: i + args.micro_batch]
            with autocast:
                logp, adv, weight = token_logprobs(model, part, device)
            old = torch.cat([e["old"] for e in part]).float()
            ref = torch.cat([e["ref"] for e in part]).float() if use_ref else None
            loss, kl = policy_loss(logp.float(), old, ref, adv, args.clip, args.kl,
                                   None if args.norm == "token" else weight)
            scaler.scale(loss / denom).backward()
            total += loss.item() / denom
            kl_total += kl.item() / denom
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    stats.update(loss=total, kl=kl_total, tokens=n_tokens)
    return stats


STATE = "resume.pt"  # the trainable weights, the optimizer and the task sampler after the last update
RESUME_SETTING = ("init", "env", "updates", "tasks_per_update", "group", "train_tasks", "temperature", "reward",
                  "invalid_penalty", "lr", "optim", "inner_epochs", "clip", "kl", "norm", "micro_batch", "lora_r",
                  "full", "batch", "max_steps", "max_new_tokens", "eval_every", "eval_episodes", "seed", "dtype")


def save_state(out: Path, args, model, opt, rng: random.Random, update_index: int) -> None:
    """Everything the next update depends on, written atomically after each update: a killed run
    resumes at the next update and makes the same updates (only the timing fields of curve.jsonl
    differ, as they do between any two runs). With --full this is the whole model and its optimizer
    state: on a big model, that is a large file per update."""
    checkpoint.save_resume_point(out / STATE, args, RESUME_SETTING, {
        "update": update_index, "weights": checkpoint.trainable_weights(model),
        "optimizer": opt.state_dict(), "rng": rng.getstate()})


def resume(out: Path, args, model, opt, rng: random.Random) -> int:
    """The number of updates an interrupted run finished (0 for a fresh run). Their weights, optimizer
    state and task sampler are restored, and curve.jsonl is cut to them."""
    state = checkpoint.load_resume_point(out / STATE, args, RESUME_SETTING)
    if state is None:
        return 0
    checkpoint.restore_weights(model, state["weights"])
    opt.load_state_dict(state["optimizer"])
    rng.setstate(state["rng"])
    curve = out / "curve.jsonl"
    rows = [r for r in common.read_jsonl(curve, require=common.CURVE) if r["update"] <= state["update"]] if curve.exists() else []
    common.write_jsonl(curve, rows)
    print(f"resuming {out} after update {state['update']} of {args.updates}")
    return state["update"]


def plot(runs: list[str], out: str) -> None:
    """Left: greedy success on test vs update. Right: mean reward of the training rollouts (what GRPO
    optimises; with --reward score it moves long before success does)."""
    fig = Figure(figsize=(10, 4))
    ax, ax_r = fig.subplots(1, 2)
    for run in runs:
        rows = common.read_jsonl(Path(run) / "curve.jsonl", require=common.CURVE)
        pts = [(r["update"], r["test_success"]) for r in rows if r.get("test_success") is not None]
        tr = [(r["update"], r["reward"]) for r in rows if "reward" in r]
        line, = ax.plot(*zip(*pts), marker="o", label=Path(run).name) if pts else ax.plot([], [])
        if tr:
            ax_r.plot(*zip(*tr), marker=".", color=line.get_color(), label=Path(run).name)
    ax.set_title("test success (greedy)", fontsize=9)
    ax.set_ylim(-0.02, 1.02)
    ax_r.set_title("training rollouts: mean reward (temperature 1.0)", fontsize=9)
    for a in (ax, ax_r):
        a.set_xlabel("GRPO update")
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def main(argv=None):
    args = parse_args(argv)
    if args.plot:
        return plot(args.plot, args.out)
    checkpoint.check_checkpoint(args.init)  # a damaged checkpoint: one line, before any work
    out = Path(args.out)
    common.lock_output(out, "rl")
    checkpoint.recover_checkpoint(out / "ckpt")  # a save a kill interrupted: finished or rolled back
    checkpoint.remove_stale_temps(out / STATE)
    pool = [envs.make(args.env) for _ in range(args.batch)]  # one env (JVM) per lockstep slot, reused
    train_tasks = pool[0].tasks("train")[: args.train_tasks]
    common.set_threads(args.threads)
    common.set_seed(args.seed)
    model, tok = build_policy(args)
    models.note_dtype(args)
    common.save_args(args, out)  # after the inputs loaded
    device = model.device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0) if args.optim == "adam"
           else torch.optim.SGD(params, lr=args.lr))
    scaler = models.grad_scaler(model)  # its loss scale carries over from update to update (fp16 only)
    rng = random.Random(args.seed)
    curve = out / "curve.jsonl"
    done = resume(out, args, model, opt, rng)  # updates already made by an interrupted run
    if done == 0:
        curve.unlink(missing_ok=True)
        if args.eval_every:
            common.append_jsonl(curve, {"update": 0, "test_success": evaluate_greedy(model, tok, args, pool)})

    tracker = tracking.Tracker(args.track, out / "tb", vars(args), out.name)
    t0 = time.time()
    for u in tqdm(range(done + 1, args.updates + 1), desc="GRPO updates", initial=done, total=args.updates):
        tasks = rng.sample(train_tasks, min(args.tasks_per_update, len(train_tasks)))
        batch = [{**t, "task_id": f"{t['task_id']}#{j}"} for t in tasks for j in range(args.group)]
        common.seed_unit(args.seed, u)
        t_roll = time.time()
        model.eval()
        episodes = list(agent.run_episodes(model, tok, args.env, batch, batch=args.batch,
                                            max_steps=args.max_steps or None, temperature=args.temperature,
                                            max_new_tokens=args.max_new_tokens, keep_messages=True, progress=None,
                                            pool=pool))
        t_upd = time.time()
        stats = update(model, tok, opt, episodes, args, device, scaler)
        now = time.time()
        stats["update"] = u
        stats["seconds"] = round(now - t0, 1)  # since the first update (evaluations included)
        stats["rollout_s"], stats["update_s"] = round(t_upd - t_roll, 1), round(now - t_upd, 1)
        # trained answer tokens per second of this update (rollouts + gradient step)
        stats["tokens_per_s"] = round(stats.get("tokens", 0) / max(1e-9, now - t_roll), 2)
        if args.eval_every and (u % args.eval_every == 0 or u == args.updates):
            stats["test_success"] = evaluate_greedy(model, tok, args, pool)
        common.append_jsonl(curve, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()})
        save_state(out, args, model, opt, rng, u)  # the resume point: after the update's curve line
        tracker.log(stats, u)
        tqdm.write(json.dumps({k: stats[k] for k in ("update", "reward", "success", "zero_std", "kl") if k in stats}))
    tracker.close()
    for env in pool:
        env.close()

    base_name = args.init
    checkpoint.save_checkpoint(model, tok, args, base_name, common.read_jsonl(curve), out / "ckpt",
                          adapter=None if args.full else RL_ADAPTER)
    (out / STATE).unlink(missing_ok=True)  # the run is complete: its checkpoint is the record
    print(f"saved {out / 'ckpt'}")


if __name__ == "__main__":
    common.run_main(main)
