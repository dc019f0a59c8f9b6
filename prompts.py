"""Every prompt of the project, in one place: the policy, the world model and the reflection.

The state text (paper: s_i) is built here from an environment's view() (envs/base.py):
the goal, the notes the agent has already seen that stay decisive (e.g. a recipe once read),
the inventory, the last few (action -> observation) pairs, the current observation and the valid
actions. It is kept short on purpose: on a CPU, reading the prompt dominates generation time, and
a 135M model does better with a compact, regular layout.
"""
from __future__ import annotations

import re

HISTORY = 2  # previous (action, observation) pairs shown besides the current observation
HISTORY_WORDS = 25  # each past observation is cut to this many words

POLICY_SYSTEM = (
    "You play a text game. Read the goal and the current state, then pick the next action from "
    "the valid actions. Answer with one line: Action: <action>"
)

WORLD_MODEL_SYSTEM = (
    "You are a world model of a text game. Given the state and an action, predict what the game "
    "answers. Answer with one line: Observation: <text>"
)

REFLECT_SYSTEM = "You are a careful player of a text game who explains decisions briefly."

# Words that would leak the data's labels into a reflection (paper 4.3, authors' fixes).
BANNED_WORDS = ("expert", "correct", "best", "optimal", "action 1", "action 2", "action 3",
                "option 1", "option 2", "option 3", "alternative 1", "alternative 2", "alternative 3")


def squash(text: str, max_words: int | None = None) -> str:
    """One line, single spaces; optionally the first `max_words` words followed by '...'."""
    words = text.split()
    if max_words is not None and len(words) > max_words:
        return " ".join(words[:max_words]) + " ..."
    return " ".join(words)


def state_text(view: dict, history: int = HISTORY) -> str:
    """The text the policy sees at one step (the same for imitation, world modelling, reflection,
    evaluation and RL: a model must never see a state laid out differently at test time)."""
    lines = [f"Goal: {squash(view['goal'])}"]
    for note in view["notes"]:
        lines.append(f"Note: {squash(note)}")
    if view["inventory"]:  # games without an inventory (bfcl) leave the line out
        lines.append(f"Inventory: {view['inventory']}")
    past = view["history"][:-1][-history:] if history > 0 else []
    notes = {squash(n) for n in view["notes"]}
    for action, obs in past:
        shown = "(see Note)" if squash(obs) in notes else squash(obs, HISTORY_WORDS)
        lines.append(f"Earlier: {action} -> {shown}")
    if view["history"]:
        lines.append(f"Last action: {view['history'][-1][0]}")
    lines.append(f"Observation: {squash(view['observation'])}")
    lines.append("Valid actions: " + view.get("action_sep", ", ").join(view["valid_actions"]))
    return "\n".join(lines)


def policy_messages(state: str, answer: str | None = None) -> list[dict]:
    """The policy's chat example: system, user = state, (assistant = answer when training)."""
    msgs = [{"role": "system", "content": POLICY_SYSTEM}, {"role": "user", "content": state}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": answer})
    return msgs


def action_answer(action: str, thought: str | None = None) -> str:
    """The assistant's answer format; agent.parse_action reads it back."""
    return (f"Thought: {thought}\n" if thought else "") + f"Action: {action}"


def world_model_messages(state: str, action: str, next_obs: str | None = None, max_words: int = 40,
                         ends: str | None = None) -> list[dict]:
    """Implicit world modelling example (paper 4.2, Eq. 3): (s, a) -> s'. Its own system prompt and an
    `Observation:` target keep it apart from the policy's `Action:` answers. ends ("won" / "lost"):
    the move ended the game, said after the observation (iwm.py --targeted): a losing move's text can
    read like a good one's ("You roast the chicken wing with the oven.")."""
    msgs = [{"role": "system", "content": WORLD_MODEL_SYSTEM},
            {"role": "user", "content": f"{state}\nAction: {action}"}]
    if next_obs is not None:
        outcome = f" {GAME_ENDS.format(ends)}" if ends else ""
        msgs.append({"role": "assistant", "content": f"Observation: {squash(next_obs, max_words)}{outcome}"})
    return msgs


GAME_ENDS = "(The game ends: {}.)"


def reflection_messages(state: str, action: str, outcome: str, alternatives: list[tuple[str, str]],
                        conclude: bool) -> list[dict]:
    """Self-reflection prompt (paper 4.3): the situation, what the chosen move led to, what the other
    moves led to; the model explains, as a plan made before acting, why the chosen move is the one to
    make. No label words; length asked for in the prompt, not forced by a token cap."""
    others = "\n".join(f"- If I \"{a}\", the game says: {squash(o, 30)}" for a, o in alternatives)
    end = (f'End with the line: Action: {action}' if conclude else "Write only the reasoning.")
    user = (
        f"{state}\n\n"
        f"I chose to \"{action}\". The game then says: {squash(outcome, 30)}\n"
        f"Other moves I considered:\n{others}\n\n"
        f"In two short sentences, in the first person, explain why \"{action}\" is the move to make now: "
        "what it achieves toward the goal and why the other moves would not help as much. Reason as "
        "before acting (\"this should ...\"). Do not mention numbers of moves or labels. " + end
    )
    return [{"role": "system", "content": REFLECT_SYSTEM}, {"role": "user", "content": user}]


def has_banned_words(text: str) -> str | None:
    low = text.lower()
    for w in BANNED_WORDS:
        if re.search(rf"\b{re.escape(w)}\b", low):
            return w
    return None
