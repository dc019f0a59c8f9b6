"""chat.py with templates written to behave like the major chat-model families: one without a system
role (Gemma), one with thinking blocks (Qwen3), one that renders tool calls (Qwen2.5, Llama 3.1):
each trains exactly the answer's tokens and its end-of-turn token, or is refused with one line; and
the loss mask of the default template (every assistant turn and its end token; none is an error)."""
import json

import pytest
from transformers import AutoTokenizer

import chat
import common
import models
import prompts

NO_SYSTEM = (  # Gemma 2/3: no system role, "model" turns, <end_of_turn>
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")

THINKING = (  # Qwen3: the last answer after the last user turn carries a thinking block; earlier ones lose
    # theirs; enable_thinking=False puts an empty block into the generation prompt
    "{% set ns = namespace(last=-1) %}{% for m in messages %}{% if m['role'] == 'user' %}{% set ns.last = loop.index0 %}"
    "{% endif %}{% endfor %}"
    "{% for m in messages %}{% if m['role'] == 'assistant' %}<|im_start|>assistant\n"
    "{% set content = m['content'].split('</think>')[-1].lstrip('\n') %}"
    "{% set reasoning = m['content'].split('</think>')[0].split('<think>')[-1].strip('\n') if '</think>' in m['content'] else '' %}"
    "{% if loop.index0 > ns.last %}<think>\n{{ reasoning }}\n</think>\n\n{% endif %}{{ content }}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")

TOOLS = (  # Qwen2.5 / Hermes style: schemas in the system turn, calls as <tool_call>{json}</tool_call>
    "{% if tools %}<|im_start|>system\n{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n{% endif %}"
    "# Tools\n<tools>{% for t in tools %}\n{{ t | tojson }}{% endfor %}\n</tools><|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if m['role'] == 'system' and tools %}{% elif m['role'] == 'assistant' and m.get('tool_calls') %}"
    "<|im_start|>assistant\n{% for c in m['tool_calls'] %}<tool_call>\n{{ {'name': c['function']['name'], "
    "'arguments': c['function']['arguments']} | tojson }}\n</tool_call>{% endfor %}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tok(template, specials=()):
    tok = AutoTokenizer.from_pretrained(str(models.tiny_model_dir()))
    if specials:
        tok.add_special_tokens({"additional_special_tokens": list(specials)})
    tok.chat_template = template
    return tok


def _trained(tok, ids, labels):
    return tok.decode([t for t, lab in zip(ids, labels) if lab != chat.IGNORE])


def test_a_template_without_system_role_gets_the_system_text_in_the_user_turn():
    tok = _tok(NO_SYSTEM, ["<start_of_turn>", "<end_of_turn>"])
    msgs = prompts.policy_messages("Observation: a fridge", "Action: open fridge")
    ids, labels = chat.encode_chat(tok, msgs)
    text = tok.decode(ids)
    assert "<start_of_turn>system" not in text and text.count("<start_of_turn>user") == 1
    assert msgs[0]["content"].strip()[:40] in text  # the system prompt is kept, inside the user turn
    assert _trained(tok, ids, labels) == "Action: open fridge<end_of_turn>"
    assert tok.convert_tokens_to_ids("<end_of_turn>") in chat.stop_token_ids(tok)  # generation stops there
    prompt = chat.render(tok, msgs[:-1], add_generation_prompt=True)
    assert prompt.endswith("<start_of_turn>model\n") and msgs[0]["content"].strip()[:40] in prompt


def test_a_thinking_template_trains_the_answer_not_a_thinking_block():
    tok = _tok(THINKING)
    msgs = prompts.policy_messages("Observation: a fridge", "Action: open fridge")
    ids, labels = chat.encode_chat(tok, msgs)
    assert _trained(tok, ids, labels) == "Action: open fridge<|im_end|>"
    # the generation prompt holds the same empty thinking block, so the model answers directly
    assert chat.render(tok, msgs[:-1], add_generation_prompt=True).endswith("<think>\n\n</think>\n\n")
    # two answers in one chat: the template drops the first one's block once a user turn follows, so
    # the chat is not append-only: refused with one line, not trained on misaligned labels
    two = msgs + [{"role": "user", "content": "Observation: open"}, {"role": "assistant", "content": "Action: take egg"}]
    with pytest.raises(common.UserError, match="not append-only") as e:
        chat.encode_chat(tok, two)
    assert "\n" not in str(e.value)


def test_a_tool_call_template_trains_the_call():
    tok = _tok(TOOLS)
    tools = [{"type": "function", "function": {"name": "cd", "description": "change directory",
                                               "parameters": {"type": "object", "properties": {"folder": {"type": "string"}}}}}]
    msgs = [{"role": "system", "content": "You operate a file system."}, {"role": "user", "content": "Go to docs."},
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "cd", "arguments": {"folder": "docs"}}}]}]
    ids, labels = chat.encode_chat(tok, msgs, tools=tools)
    trained = _trained(tok, ids, labels)
    assert json.loads(trained.split("<tool_call>")[1].split("</tool_call>")[0]) == {"name": "cd", "arguments": {"folder": "docs"}}
    assert trained.endswith("<|im_end|>") and "change directory" not in trained
    assert "change directory" in tok.decode(ids)  # the schema is in the prompt
    # the plain ChatML template writes neither the schemas nor the call: refused, one line each
    plain = _tok(models.CHATML)
    with pytest.raises(common.UserError, match="ignores `tools`"):
        chat.encode_chat(plain, msgs, tools=tools)
    with pytest.raises(common.UserError, match="does not write this turn's tool_calls"):
        chat.encode_chat(plain, msgs)


def test_fold_system_without_a_user_turn():
    assert chat.fold_system([{"role": "system", "content": "S"}, {"role": "assistant", "content": "A"}]) == [
        {"role": "user", "content": "S"}, {"role": "assistant", "content": "A"}]


def test_masks_train_exactly_each_assistant_turn_and_its_end_token(tiny):
    _, tok = tiny
    msgs = [{"role": "system", "content": "You play a text game."},
            {"role": "user", "content": "Observation: a fridge"},
            {"role": "assistant", "content": "Action: open fridge"},
            {"role": "user", "content": "Observation: You open the fridge."},
            {"role": "assistant", "content": "Action: take carrot"}]
    ids, labels = chat.encode_chat(tok, msgs)
    assert len(ids) == len(labels)
    # the ids are exactly the rendered conversation's ids
    assert ids == tok(chat.render(tok, msgs), add_special_tokens=False)["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    first = tok("Action: open fridge", add_special_tokens=False)["input_ids"] + [end]
    second = tok("Action: take carrot", add_special_tokens=False)["input_ids"] + [end]
    trained = [i for i, lab in enumerate(labels) if lab != chat.IGNORE]
    # two contiguous spans, each right after "<|im_start|>assistant\n", each ending on <|im_end|>
    head = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    spans, start = [], None
    for i in range(len(ids)):
        on = labels[i] != chat.IGNORE
        if on and start is None:
            start = i
        if not on and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(ids)))
    assert [ids[a:b] for a, b in spans] == [first, second]
    for a, _ in spans:
        assert ids[a - len(head):a] == head
    assert labels[spans[0][1] - 1] == end and len(trained) == len(first) + len(second)
    # the final newline after the last <|im_end|> is not trained
    assert labels[-1] == chat.IGNORE or ids[-1] == end


def test_zero_target_example_is_an_error(tiny):
    _, tok = tiny
    with pytest.raises(common.UserError, match="no trained token"):
        chat.encode_chat(tok, [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])
    with pytest.raises(common.UserError, match="no trained token"):
        chat.encode_chat(tok, prompts.policy_messages("a long state " * 50, "Action: eat meal"), max_len=20)
