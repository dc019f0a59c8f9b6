"""agent.py: the decoding settings every generate call states (greedy = argmax, sampling = temperature
only), whatever the model's generation_config.json says; parsing actions."""
import json

import pytest
import torch

import agent
import models
import prompts

# What a Hub chat model ships in generation_config.json (Qwen2.5-Instruct's values, and a few more
# fields that add a logits processor when set)
HUB_DEFAULTS = {"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.05,
                "min_p": 0.05, "no_repeat_ngram_size": 3, "suppress_tokens": [5, 6]}


def _spy_processors(monkeypatch, model):
    """Record the logits processors generate() builds for each call."""
    built = []
    original = model._get_logits_processor

    def spy(*a, **k):
        procs = original(*a, **k)
        built.append([type(p).__name__ for p in procs])
        return procs

    monkeypatch.setattr(model, "_get_logits_processor", spy)
    return built


CHATS = [[{"role": "user", "content": "Valid actions: open fridge, take knife"}]]


def test_greedy_is_argmax_and_sampling_is_temperature_only_whatever_the_model_ships(tiny, monkeypatch):
    model, tok = tiny
    monkeypatch.setattr(model, "generation_config", model.generation_config.__class__(**HUB_DEFAULTS,
                        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))
    built = _spy_processors(monkeypatch, model)
    agent.generate(model, tok, CHATS, max_new_tokens=3, temperature=0.0)
    agent.generate(model, tok, CHATS, max_new_tokens=3, temperature=0.7)
    agent.generate(model, tok, CHATS, max_new_tokens=3, temperature=1.0)
    agent.generate(model, tok, CHATS, max_new_tokens=3, temperature=0.7, top_k=5, top_p=0.9)
    # the fields the model's config sets and decoding_config states: none of the Hub's values leak in;
    # min_p and suppress_tokens (None = "unset") are emptied by models.load_model (next test)
    stated = [[p for p in b if p not in ("MinPLogitsWarper", "SuppressTokensLogitsProcessor")] for b in built]
    assert stated == [[], ["TemperatureLogitsWarper"], [],
                      ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]]


def test_loaded_model_keeps_none_of_its_generation_defaults(tmp_path, monkeypatch):
    model, tok = models.load_model("tiny-random", dtype="fp32")
    folder = tmp_path / "hub-like"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    cfg = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**cfg, **HUB_DEFAULTS}))
    loaded, tok = models.load_model(str(folder), dtype="fp32")
    for key in HUB_DEFAULTS:
        assert getattr(loaded.generation_config, key) in (None, False), key
    built = _spy_processors(monkeypatch, loaded)
    greedy = agent.generate(loaded, tok, CHATS * 2, max_new_tokens=6, temperature=0.0)
    agent.generate(loaded, tok, CHATS, max_new_tokens=3, temperature=0.5)
    assert built == [[], ["TemperatureLogitsWarper"]]
    # greedy is the argmax: the same answer as an explicit argmax loop over the logits

    ids = tok(agent.render(tok, CHATS[0], add_generation_prompt=True), return_tensors="pt",
              add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for _ in range(6):
            nxt = loaded(ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
            if nxt.item() in agent.stop_token_ids(tok):
                break
    prompt_len = len(tok(agent.render(tok, CHATS[0], add_generation_prompt=True), add_special_tokens=False)["input_ids"])
    assert greedy[0] == greedy[1] == tok.decode(ids[0, prompt_len:], skip_special_tokens=True).strip()


def test_sampling_follows_the_full_distribution(tiny):
    """Samples at temperature 1 reach tokens outside the top 50 as often as the softmax says."""
    model, tok = tiny
    chat = [{"role": "user", "content": "x"}]
    ids = tok(agent.render(tok, chat, add_generation_prompt=True), return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        probs = model(ids).logits[0, -1].float().softmax(-1)
    top50 = set(probs.topk(50).indices.tolist())
    outside = 1 - probs[list(top50)].sum().item()
    assert outside > 0.5  # the tiny random model: nearly flat over 1,024 tokens
    torch.manual_seed(0)
    answers = agent.generate(model, tok, [chat], max_new_tokens=1, temperature=1.0, num_samples=400, return_ids=True)[0]
    first = [a[1][0] for a in answers if a[1]]
    share = sum(t not in top50 for t in first) / len(first)
    assert share == pytest.approx(outside, abs=0.1)  # top-k 50 would make it 0


def test_decoding_config_refuses_nonsense():
    _, tok = models.load_model("tiny-random", dtype="fp32")
    for bad in ({"temperature": -1}, {"top_k": -2}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError):
            agent.decoding_config(tok, max_new_tokens=4, **bad)


@pytest.mark.parametrize("answer,action", [
    ("Action: open fridge", "open fridge"),
    ("Thought: I need the knife.\nAction: take knife", "take knife"),
    ("Action: look around\nAction: take knife\nmore text", "take knife"),
    ("  take cookbook  ", "take cookbook"),
    ("first line\nsecond", "first line"),
    ("Action:", ""),
    ("", ""),
])
def test_parse_action(answer, action):
    assert agent.parse_action(answer) == action


def test_shared_prefill_sampling_matches_plain_greedy(tiny):
    model, tok = tiny
    chats = [prompts.policy_messages("Observation: a fridge\nValid actions: open fridge"),
             prompts.policy_messages("Goal: eat\nObservation: You take the knife. The counter is empty now.")]
    plain = agent.generate(model, tok, chats, max_new_tokens=8)
    shared = agent.generate(model, tok, chats, max_new_tokens=8, num_samples=3)
    assert [s for s in shared] == [[p] * 3 for p in plain]
