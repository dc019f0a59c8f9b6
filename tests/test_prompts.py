"""prompts.py: the state text's layout, the three kinds of examples, the answer format, banned words."""
import agent
import prompts


def _view(**changes):
    view = {"goal": "Cook  a\nmeal", "notes": ["Recipe: fry the carrot"], "inventory": "a knife",
            "history": [("read cookbook", "Recipe: fry the carrot"), ("go north", " ".join(["word"] * 40)),
                        ("take carrot", "You take the carrot.")],
            "observation": "You take the carrot.", "valid_actions": ["eat carrot", "go south"]}
    return {**view, **changes}


def test_state_text_lays_out_every_part_in_one_order():
    text = prompts.state_text(_view())
    lines = text.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["Goal", "Note", "Inventory", "Earlier", "Earlier", "Last action",
                                                  "Observation", "Valid actions"]
    assert lines[0] == "Goal: Cook a meal"  # one line, single spaces
    assert lines[3] == "Earlier: read cookbook -> (see Note)"  # a past observation already in a note is not repeated
    assert lines[4] == "Earlier: go north -> " + " ".join(["word"] * prompts.HISTORY_WORDS) + " ..."
    assert lines[5] == "Last action: take carrot" and lines[-1] == "Valid actions: eat carrot, go south"
    # no inventory line where a game has none; history 0 shows no earlier moves; an env's separator
    bare = prompts.state_text(_view(inventory="", action_sep=" | "), history=0)
    assert "Inventory" not in bare and "Earlier" not in bare and bare.endswith("eat carrot | go south")


def test_the_answer_format_is_what_the_agent_parses():
    for thought in (None, "The recipe says to fry it."):
        answer = prompts.action_answer("cook carrot with stove", thought)
        assert agent.parse_action(answer) == "cook carrot with stove"
        assert answer.startswith("Thought: ") is (thought is not None)


def test_world_model_example_predicts_the_cut_observation_and_says_when_the_game_ends():
    msgs = prompts.world_model_messages("Observation: a stove", "cook carrot with oven", "You roast " + "x " * 50,
                                        max_words=5, ends="lost")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[0]["content"] == prompts.WORLD_MODEL_SYSTEM != prompts.POLICY_SYSTEM  # apart from the policy
    assert msgs[1]["content"].endswith("\nAction: cook carrot with oven")
    assert msgs[2]["content"] == "Observation: You roast x x x ... (The game ends: lost.)"  # five words
    assert len(prompts.world_model_messages("s", "a")) == 2  # no target: a prompt for prediction (probe.py)


def test_reflection_prompt_names_every_move_and_no_label():
    msgs = prompts.reflection_messages("Observation: a stove", "cook carrot with stove", "You fry the carrot.",
                                       [("eat carrot", "You eat the carrot. You lost."), ("go south", "A hall.")],
                                       conclude=True)
    user = msgs[1]["content"]
    assert '"eat carrot"' in user and '"go south"' in user and "You fry the carrot." in user
    assert user.endswith("End with the line: Action: cook carrot with stove")
    assert prompts.has_banned_words(user) is None  # the prompt itself leaks no label
    assert prompts.has_banned_words("This is the best move.") == "best"
    assert prompts.has_banned_words("The bestiary is closed.") is None  # whole words only
    assert prompts.has_banned_words("Unlike Option 2, it cooks.") == "option 2"
