"""Chat formats: how a conversation becomes text, and which spans carry the loss.

Apollo's format (the 0.5B-7B models): `User:{q}\\nAssistant:{a}<|endoftext|>`, turns
joined by `\\n`. Only assistant text and the end-of-text token that closes each
assistant turn are trained on; the rest is context.
"""

from __future__ import annotations

from collections.abc import Sequence

EOS = "<|endoftext|>"
# The chat format of a model whose config and checkpoint name none: Apollo's own.
DEFAULT_CHAT_FORMAT = "apollo"
USER_PREFIX = "User:"
ASSISTANT_PREFIX = "\nAssistant:"
TURN_SEPARATOR = "\n"


def apollo_segments(turns: Sequence[str], eos: str = EOS) -> list[tuple[str, bool]]:
    """Conversation turns -> [(text, is_trained)], concatenating to the rendered text.

    >>> apollo_segments(["q", "a"])
    [('User:q\\nAssistant:', False), ('a<|endoftext|>', True)]
    """
    segments: list[tuple[str, bool]] = []
    for i in range(0, len(turns), 2):
        sep = TURN_SEPARATOR if i else ""
        segments.append((f"{sep}{USER_PREFIX}{turns[i]}{ASSISTANT_PREFIX}", False))
        if i + 1 < len(turns):
            segments.append((f"{turns[i + 1]}{eos}", True))
    return segments


def apollo_prompt(messages: Sequence[dict[str, str]], eos: str = EOS) -> str:
    """OpenAI-style messages -> the Apollo prompt that asks for the next assistant turn.

    System messages are put before the first user turn (Apollo has no system role).
    """
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m["content"] for m in messages if m["role"] != "system"]
    if turns and system:
        turns[0] = f"{system}\n{turns[0]}"
    text = "".join(t for t, _ in apollo_segments(turns, eos))
    if len(turns) % 2 == 0:  # ends with an assistant turn: open a new one
        text += f"{TURN_SEPARATOR}{USER_PREFIX}{ASSISTANT_PREFIX}"
    return text


# The same format as a Jinja chat template, stored in the embedded tokenizer so that
# `tokenizer.apply_chat_template` agrees with `apollo_segments`.
APOLLO_CHAT_TEMPLATE = (
    "{% set ns = namespace(first=true) %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}"
    "{% if not ns.first %}{{ '\\n' }}{% endif %}User:{{ m['content'] }}{{ '\\n' }}Assistant:"
    "{% set ns.first = false %}"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] }}" + EOS + "{% endif %}"
    "{% endfor %}"
)
