"""The data feeds other tools unchanged: one `datasets` call reads every training file (through
train.py --export), TRL's SFTTrainer masks what train.py masks, and rows in the authors' published
format (text, world model, reflection, function calling with `tools` and `tool_calls`) train, or are
refused with one line when the chat template would silently drop a part of them."""
import json

import pytest

import chat
import collect
import common
import iwm
import models
import prompts
import reflect
import train
from conftest import run_script

# A ChatML template that renders tools and tool calls (as Qwen2.5's does), for the function-calling rows
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] %}{{ m['content'] }}{% endif %}"
    "{% if m.get('tool_calls') %}{% for c in m['tool_calls'] %}<tool_call>{{ c['function'] | tojson }}</tool_call>"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

TOOLS = [{"type": "function", "function": {"name": "cd", "description": "change directory",
                                           "parameters": {"type": "object", "properties": {"folder": {"type": "string"}}}}}]
FC_ROW = {"tools": TOOLS, "messages": [
    {"role": "system", "content": "You are a function-calling agent."},
    {"role": "user", "content": "Go to the documents folder."},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "cd", "arguments": "{\"folder\": \"documents\"}"}}]}]}
PUBLISHED = {  # one row of each of the authors' kinds (their *_text and *_fc chat JSONL files)
    "text": {"messages": [{"role": "system", "content": prompts.POLICY_SYSTEM},
                          {"role": "user", "content": "Observation: a fridge\nValid actions: open fridge"},
                          {"role": "assistant", "content": "Action: open fridge"}]},
    "iwm": {"messages": prompts.world_model_messages("Observation: a fridge", "open fridge", "You open the fridge.")},
    "reflection": {"messages": prompts.policy_messages("Observation: a fridge", "Thought: the milk is inside.\nAction: open fridge")},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    """expert.jsonl, iwm.jsonl, reflect.jsonl of a real (tiny) collection, and their export."""
    d = tmp_path_factory.mktemp("interop")
    collect.main(["--env", "twx-cooking", "--tasks", "2", "--k-iwm", "1", "--k-sr", "2", "--model", "tiny-random",
                  "--dtype", "fp32", "--out", str(d)])
    iwm.main(["--run", str(d)])
    reflect.main(["--run", str(d), "--model", "tiny-random", "--dtype", "fp32", "--min-words", "0"])
    names = ["expert.jsonl", "iwm.jsonl", "reflect.jsonl"]
    rows = [common.read_jsonl(d / n) for n in names]
    if not rows[2]:  # the tiny model's reflections may all be filtered: a kept one in the same schema
        common.write_jsonl(d / "reflect.jsonl", [{"id": "r0", "messages": PUBLISHED["reflection"]["messages"], "meta": {}}])
    r = run_script("train.py", "--data", *[d / n for n in names], "--model", "tiny-random", "--dtype", "fp32",
                   "--export", d / "all.jsonl")
    assert r.returncode == 0, r.stderr[-2000:]
    return d, names


def test_one_datasets_call_reads_every_training_file(files):
    datasets = pytest.importorskip("datasets")
    d, names = files
    with pytest.raises(Exception):  # the originals keep their own columns: one call cannot read them
        datasets.load_dataset("json", data_files=[str(d / n) for n in names], split="train")
    ds = datasets.load_dataset("json", data_files=str(d / "all.jsonl"), split="train")
    assert len(ds) == sum(len(common.read_jsonl(d / n)) for n in names)
    assert set(ds["source"]) == set(names) and set(ds.column_names) >= {"id", "prompt", "completion"}
    first = common.read_jsonl(d / "expert.jsonl")[0]
    assert ds[0]["prompt"] + ds[0]["completion"] == [{**m} for m in first["messages"]]


def test_trl_masks_what_train_py_masks(files, tiny):
    # TRL's SFTTrainer on the exported rows (completion-only loss) sees the same tokens and trains the
    # same ones as chat.encode_chat, plus the newline ChatML writes after <|im_end|>: TRL counts it as
    # part of the completion, we stop at the end-of-turn token (generation stops there anyway)
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    model, tok = tiny
    d, names = files
    ds = datasets.load_dataset("json", data_files=str(d / "all.jsonl"), split="train")
    cfg = trl.SFTConfig(output_dir=str(d / "trl"), report_to=[], completion_only_loss=True, max_length=None,
                        dataset_num_proc=None, use_cpu=True)
    trainer = trl.SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok)
    prepared = trainer.train_dataset
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    stops = set(chat.stop_token_ids(tok))
    checked = set()
    for row, src, ex in zip(prepared, ds["source"], ds):
        ids, labels = chat.encode_chat(tok, ex["prompt"] + ex["completion"])
        theirs = [i for i, lab in enumerate(row["labels"]) if lab != -100]  # TRL folds its completion mask into labels
        ours = [i for i, lab in enumerate(labels) if lab != chat.IGNORE]
        assert row["input_ids"] == ids, src  # the same tokens
        tail = list(range(ours[-1] + 1, len(ids)))  # what the template writes after the end-of-turn token
        assert ids[ours[-1]] in stops and [ids[i] for i in tail] == newline  # both train <|im_end|> itself
        assert theirs == ours + tail, src
        checked.add(src)
    assert checked == set(names)


@pytest.mark.parametrize("kind", sorted(PUBLISHED))
def test_published_text_rows_train(tmp_path, tiny, kind):
    _, tok = tiny
    f = tmp_path / f"{kind}.jsonl"
    common.write_jsonl(f, [PUBLISHED[kind]])
    ex = train.load_examples(tok, [str(f)], 4096)
    trained = tok.decode([t for t, lab in zip(ex[0]["ids"], ex[0]["labels"]) if lab != chat.IGNORE])
    assert trained == PUBLISHED[kind]["messages"][-1]["content"] + "<|im_end|>"


def test_function_calling_rows_render_their_tools_or_are_refused(tmp_path, tiny):
    _, tok = tiny
    f = tmp_path / "fc.jsonl"
    common.write_jsonl(f, [PUBLISHED["text"], FC_ROW])
    # the tiny model's plain ChatML ignores `tools` and cannot write tool_calls: refused, never trained empty
    with pytest.raises(common.UserError, match=r"fc.jsonl:2: the chat template ignores `tools`"):
        train.load_examples(tok, [str(f)], 4096)
    no_tools = {k: v for k, v in FC_ROW.items() if k != "tools"}
    common.write_jsonl(f, [no_tools])
    with pytest.raises(common.UserError, match=r"fc.jsonl:1: message 2: the chat template does not write this turn's tool_calls"):
        train.load_examples(tok, [str(f)], 4096)
    # a template that renders them: the schemas are in the prompt and the call is the trained answer
    tool_tok = type(tok).from_pretrained(str(models.resolve_model_path("tiny-random")))
    tool_tok.chat_template = TOOL_TEMPLATE
    common.write_jsonl(f, [FC_ROW, {**FC_ROW, "tools": json.dumps(TOOLS)}])  # a list, or a JSON string as in datasets
    for ex in train.load_examples(tool_tok, [str(f)], 4096):
        prompt = tool_tok.decode([t for t, lab in zip(ex["ids"], ex["labels"]) if lab == chat.IGNORE])
        trained = tool_tok.decode([t for t, lab in zip(ex["ids"], ex["labels"]) if lab != chat.IGNORE])
        assert '"name": "cd"' in prompt and '"description": "change directory"' in prompt
        assert trained == '<tool_call>{"name": "cd", "arguments": "{\\"folder\\": \\"documents\\"}"}</tool_call><|im_end|>'
    # from the command line: one line, exit 2
    common.write_jsonl(f, [FC_ROW])
    r = run_script("train.py", "--data", f, "--model", "tiny-random", "--dtype", "fp32", "--out", tmp_path / "ck")
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "fc.jsonl:1" in errors[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "ck").exists()
