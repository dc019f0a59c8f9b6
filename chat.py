"""A chat as training data: rendered by the model's own template, turned into token ids with a loss
mask built from the ids (label -100 everywhere but the assistant's answers and their end-of-turn
token; an example with no trained token is an error), padded into batches, and scored by the
log-probability of its trained tokens. That is the whole supervised loss of the paper's section 3-4
(train.py sums it; rl.py weights it by advantages). `python train.py --show-mask N` shows the mask.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common import UserError

IGNORE = -100  # label sentinel: no loss on this position


# ---------------------------------------------------------------------------------------------
# Chat rendering and loss masks (built from token ids, append-only)
def render(tok, messages: list[dict], add_generation_prompt: bool = False, tools: list | None = None) -> str:
    """The chat as the model's template writes it (tools: function schemas, for templates that take them).
    Two behaviours of the major families, handled the same way for training and for generation:
    - thinking templates (Qwen3 and the like) get enable_thinking=False: the generation prompt then
      ends with an empty thinking block, so the trained tokens are the answer itself (an answer is an
      action, or SR's thought then action), not a thinking block to imitate; templates without the
      switch ignore it;
    - a template that refuses a system message (Gemma's "System role not supported") gets it folded
      into the first user message, as those families' own docs advise."""
    extra = {"tools": tools} if tools else {}
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                       enable_thinking=False, **extra)
    except Exception as e:  # a template that cannot render these messages (jinja errors, None contents, ...)
        first = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if messages and messages[0].get("role") == "system":
            try:
                return tok.apply_chat_template(fold_system(messages), tokenize=False,
                                               add_generation_prompt=add_generation_prompt, enable_thinking=False, **extra)
            except Exception:
                pass
        raise UserError(f"the chat template cannot render this chat: {first}") from None


def template_messages(tok, messages: list[dict], tools: list | None = None) -> list[dict]:
    """The messages as the template takes them: with the system message folded into the first user
    message when the template refuses a system role (render does the same for a generation prompt),
    so that a chat is folded once, whole, before its turns are rendered one by one."""
    if not messages or messages[0].get("role") != "system":
        return messages
    try:
        tok.apply_chat_template(messages, tokenize=False, enable_thinking=False, **({"tools": tools} if tools else {}))
        return messages
    except Exception:
        return fold_system(messages)


def fold_system(messages: list[dict]) -> list[dict]:
    """The system message's text put at the head of the first user message (for templates with no
    system role); a chat without a user message gets the system text as one."""
    system, rest = messages[0], messages[1:]
    for i, m in enumerate(rest):
        if m.get("role") == "user":
            merged = {**m, "content": f"{system.get('content') or ''}\n\n{m.get('content') or ''}"}
            return rest[:i] + [merged] + rest[i + 1:]
    return [{"role": "user", "content": system.get("content") or ""}] + rest


def check_renders(tok, messages: list[dict], tools: list | None) -> None:
    """Refuse, with one line, a chat whose content the template would silently drop: function schemas
    (`tools`) a template ignores, or assistant `tool_calls` it does not write (the turn would be
    trained as an empty answer). The authors' released data has both (their "fc" files)."""
    if tools:
        names = [t.get("function", t).get("name") for t in tools if isinstance(t, dict)]
        text = render(tok, messages, tools=tools)
        missing = [n for n in names if n and n not in text]
        if missing:
            raise UserError(f"the chat template ignores `tools` (no {missing[0]!r} in the rendered prompt): "
                            "use a model whose template renders tools, or put the schemas in the system message")
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        calls = m.get("tool_calls") or []
        if not calls and not (m.get("content") or "").strip():
            raise UserError(f"message {i}: an assistant turn with neither content nor tool_calls (nothing to train)")
        if calls:
            turn = render(tok, messages[: i + 1], tools=tools)[len(render(tok, messages[:i], tools=tools,
                                                                          add_generation_prompt=True)):]
            for c in calls:
                name = (c.get("function") or {}).get("name") or c.get("name")
                if not name or name not in turn:
                    raise UserError(f"message {i}: the chat template does not write this turn's tool_calls "
                                    f"({name!r} missing): it would be trained as an empty answer")


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def stop_token_ids(tok) -> list[int]:
    """Token ids that end an assistant turn (eos plus the chat template's end-of-turn marker)."""
    ids = {tok.eos_token_id}
    for t in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        i = tok.convert_tokens_to_ids(t)
        if isinstance(i, int) and i != tok.unk_token_id and i is not None and i >= 0:
            ids.add(i)
    return sorted(i for i in ids if i is not None)


def encode_chat(tok, messages: list[dict], max_len: int | None = None,
                tools: list | None = None) -> tuple[list[int], list[int]]:
    """Token ids and labels for a chat example: loss on every assistant turn's content and its
    end-of-turn token, IGNORE (-100) everywhere else.

    Append-only: the ids of messages[:i+1] must extend those of messages[:i] (checked), so each
    turn's tokens are exactly the tokens the model sees at inference, and the boundary between the
    generation prompt ("<|im_start|>assistant\\n") and the target is found from ids, not by
    searching strings. tools: the row's function schemas, rendered by the template (check_renders refuses a
    template that would drop them or the assistant's tool_calls)."""
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise UserError(f"message {i}: expected an object with a 'role'")
    messages = template_messages(tok, messages, tools)
    check_renders(tok, messages, tools)
    stops = set(stop_token_ids(tok))
    ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            head = _ids(tok, render(tok, messages[:i], add_generation_prompt=True, tools=tools))
            if head[: len(ids)] != ids:
                raise UserError("chat template is not append-only before an assistant turn; cannot build masks")
            labels += [IGNORE] * (len(head) - len(ids))
            ids = head
        full = _ids(tok, render(tok, messages[: i + 1], tools=tools))
        if full[: len(ids)] != ids:
            raise UserError(f"chat template is not append-only at message {i} ({m['role']}); cannot build masks")
        new = full[len(ids):]
        if m["role"] == "assistant":
            # train the content and the end-of-turn token; not what the template adds after it
            end = max((j for j, t in enumerate(new) if t in stops), default=len(new) - 1)
            labels += new[: end + 1] + [IGNORE] * (len(new) - end - 1)
        else:
            labels += [IGNORE] * len(new)
        ids = full
    if max_len is not None and len(ids) > max_len:
        ids, labels = ids[:max_len], labels[:max_len]
    if all(x == IGNORE for x in labels):
        raise UserError("a training example has no trained token (no assistant turn, or cut by max_len)")
    return ids, labels


# ---------------------------------------------------------------------------------------------
# Batches and the log-probability of the trained tokens
def collate(examples: list[dict], pad_id: int, device):
    """Right-padded tensors; padding is masked out of attention and labels."""
    width = max(len(e["ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["ids"])
        ids[i, :n] = torch.tensor(e["ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def target_logprobs(model, ids, mask, labels):
    """Log-probabilities of the target tokens (labels != -100), computing the LM head only there.
    Returns (logp of each target token [N], the boolean target mask [B, T-1])."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]  # position t predicts token t+1
    keep = targets != IGNORE
    logits = base.get_output_embeddings()(hidden[:, :-1][keep]).float()
    return -F.cross_entropy(logits, targets[keep], reduction="none"), keep
