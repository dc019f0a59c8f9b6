"""The agent loop: batched generation (a shared prompt prefix read once, K samples per prompt), the
action parsed from an answer, and episodes played in lockstep (one generate call per step across
the live episodes). collect.py, reflect.py, evaluate.py and rl.py act through it.
"""
from __future__ import annotations

import torch
from tqdm import tqdm
from transformers import GenerationConfig

import envs
import prompts
from chat import render, stop_token_ids


# ---------------------------------------------------------------------------------------------
# Batched generation
def common_prefix_len(rows: list[list[int]]) -> int:
    """Length of the longest token prefix shared by every row."""
    n = min(len(r) for r in rows)
    for i in range(n):
        if any(r[i] != rows[0][i] for r in rows):
            return i
    return n


SHARED_PREFIX_MIN = 16  # below this many shared tokens, reading the prefix separately is not worth it


def decoding_config(tok, *, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0):
    """The decoding settings of every generate call, stated in full. temperature 0 = greedy (plain argmax,
    no logits processor at all); temperature > 0 = sampling from softmax(logits / temperature) over the
    whole vocabulary, unless top_k > 0 or top_p < 1 ask for truncation. Every field that could add a
    logits processor is set to its "off" value explicitly: generate() fills a field left unset (None)
    from the model's generation_config.json (Hub chat models ship top-k 20, top-p 0.8, repetition
    penalties) and then from the library's defaults (top-k 50), so None would not mean "off".
    The untuned 135M model puts 14-31% of each token's probability outside its top 50 at temperature 1:
    a silently truncated sampler is another policy than the one rl.py's log-probabilities describe."""
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"decoding: temperature {temperature}, top_k {top_k}, top_p {top_p} out of range")
    sample = temperature > 0
    # greedy builds no sampling warper at all, so temperature, top-k and top-p do not apply to it
    warp = {"temperature": temperature, "top_k": top_k, "top_p": top_p} if sample else {}
    return GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=sample, num_beams=1, **warp,
        typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, repetition_penalty=1.0, encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0, length_penalty=1.0, min_length=0, renormalize_logits=False,
        remove_invalid_values=False, pad_token_id=tok.pad_token_id, eos_token_id=stop_token_ids(tok))


def generate(model, tok, conversations: list[list[dict]], *, max_new_tokens: int = 32,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, num_samples: int = 1,
             batch_size: int = 16, progress: str | None = None, return_ids: bool = False) -> list:
    """Answers for many chats at once, left-padded. temperature 0 = greedy; above 0, sampling from the
    full distribution (top_k / top_p truncate it only when asked: decoding_config).
    return_ids: (text, sampled token ids) pairs instead of texts; the ids run to and include the
    first end-of-turn token (none when the length cap cut the answer). RL trains on exactly these
    tokens: re-tokenizing the text can give other tokens than were sampled.

    Two ways of not reading the same tokens twice (reading the prompt dominates on a CPU):
    - the prefix every chat of a batch shares (system prompt, often the goal) is read once and its
      key/value cache copied to every row; each row's own remainder is left-padded after it, so a
      row reads [shared prefix][padding][its own tokens] with the padding masked out;
    - num_samples > 1 returns a list of num_samples answers per chat: the chat is read once and its
      cache repeated num_samples times, instead of num_return_sequences, which reads the same
      prompt num_samples times."""
    stops = stop_token_ids(tok)
    cfg = decoding_config(tok, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
    out: list = []
    chunks = range(0, len(conversations), batch_size)
    for start in tqdm(chunks, desc=progress, disable=progress is None, leave=False):
        chats = conversations[start: start + batch_size]
        rows = [tok(render(tok, c, add_generation_prompt=True), add_special_tokens=False)["input_ids"] for c in chats]
        # the shared prefix, leaving each row at least one token of its own (generate must read one)
        shared = min(common_prefix_len(rows), min(len(r) for r in rows) - 1) if num_samples == 1 and len(rows) > 1 else 0
        shared = shared if shared >= SHARED_PREFIX_MIN else 0
        width = max(len(r) for r in rows) - shared
        ids = torch.full((len(rows), shared + width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, :shared] = torch.tensor(r[:shared], dtype=torch.long)
            ids[i, shared + width - (len(r) - shared):] = torch.tensor(r[shared:], dtype=torch.long)
            mask[i, :shared] = 1
            mask[i, shared + width - (len(r) - shared):] = 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        with torch.no_grad():
            if shared:
                cache = model(input_ids=ids[:1, :shared], use_cache=True).cache
                cache.batch_repeat_interleave(len(rows))
                gen = model.generate(input_ids=ids, attention_mask=mask, cache=cache, generation_config=cfg)
            elif num_samples == 1:
                gen = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
            else:
                # prefill all but the last prompt token once, then repeat the cache per sample
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                cache = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                              use_cache=True).cache
                cache.batch_repeat_interleave(num_samples)
                gen = model.generate(input_ids=ids.repeat_interleave(num_samples, 0),
                                     attention_mask=mask.repeat_interleave(num_samples, 0),
                                     cache=cache, generation_config=cfg)
        texts = tok.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
        texts = [t.strip() for t in texts]
        if return_ids:
            texts = list(zip(texts, _until_stop(gen[:, ids.shape[1]:].tolist(), set(stops))))
        if num_samples == 1:
            out += texts
        else:
            out += [texts[i: i + num_samples] for i in range(0, len(texts), num_samples)]
    return out


def _until_stop(rows: list[list[int]], stops: set) -> list[list[int]]:
    """Each generated row up to and including its first stop token (what follows is padding)."""
    out = []
    for r in rows:
        end = next((j for j, t in enumerate(r) if t in stops), None)
        out.append(r if end is None else r[: end + 1])
    return out


# ---------------------------------------------------------------------------------------------
# Actions
def parse_action(answer: str) -> str:
    """The text after the last `Action:` (to the end of its line), else the whole stripped answer's
    first line. Never raises: any text yields some action string for the env to judge."""
    idx = answer.rfind("Action:")
    text = answer[idx + len("Action:"):] if idx >= 0 else answer
    text = text.strip()
    return text.splitlines()[0].strip() if text else ""


# ---------------------------------------------------------------------------------------------
# The batched episode loop (evaluate.py, rl.py)
def run_episodes(model, tok, env_name: str, tasks: list[dict], *, batch: int = 16, max_steps: int | None = None,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, max_new_tokens: int = 48, action_mode: str = "raw",
                 history: int | None = None, progress: str | None = "episodes", keep_messages: bool = False,
                 pool: list | None = None):
    """Play `tasks` with the model, `batch` episodes in lockstep: one batched generate call per step
    across all live episodes; a finished episode's slot takes the next task. Yields one record per
    finished episode (in finishing order, deterministic for a given batch size).
    `pool`: envs to reuse across calls (each env is a JVM that takes ~0.3 s to start); the caller
    closes them. Without it, the loop opens min(batch, len(tasks)) envs and closes them at the end."""
    history = prompts.HISTORY if history is None else history
    own = pool is None
    if own:
        pool = [envs.make(env_name) for _ in range(max(1, min(batch, len(tasks))))]
    pool = pool[: max(1, min(batch, len(tasks)))]
    max_steps = max_steps or pool[0].max_steps
    queue = list(tasks)
    slots: list[dict | None] = [None] * len(pool)
    bar = tqdm(total=len(tasks), desc=progress, disable=progress is None)
    try:
        while queue or any(slots):
            for i, env in enumerate(pool):
                if slots[i] is None and queue:
                    task = queue.pop(0)
                    env.reset(task)
                    slots[i] = {"task": task, "steps": []}
            live = [i for i, s in enumerate(slots) if s is not None]
            chats = [prompts.policy_messages(prompts.state_text(pool[i].view(), history)) for i in live]
            answers = generate(model, tok, chats, max_new_tokens=max_new_tokens, temperature=temperature,
                               top_k=top_k, top_p=top_p,
                               batch_size=len(live), return_ids=keep_messages)
            for i, chat, answer in zip(live, chats, answers):
                answer, answer_ids = answer if keep_messages else (answer, None)
                env, ep = pool[i], slots[i]
                action = parse_action(answer)
                if action_mode == "mapped":
                    action = env.map_action(action)  # the closest valid action (envs/base.py)
                valid = env.is_valid(action)  # judged before the step changes the state
                obs, reward, done = env.step(action)
                step = {"answer": answer, "action": action, "valid": valid,
                        "observation": obs, "reward": reward}
                if keep_messages:  # what RL trains on: the exact prompt and the sampled token ids
                    step["messages"], step["answer_ids"] = chat, answer_ids
                ep["steps"].append(step)
                if done or len(ep["steps"]) >= max_steps:
                    steps = ep["steps"]
                    yield {"task_id": ep["task"]["task_id"], "success": env.success(), "score": env.score(),
                           "steps": len(steps), "invalid": sum(not s["valid"] for s in steps),
                           "trajectory": steps}
                    slots[i] = None
                    bar.update(1)
    finally:
        bar.close()
        if own:
            for env in pool:
                env.close()
