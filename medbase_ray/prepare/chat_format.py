"""Chat formats: a conversation -> segments `[(text, is_trained)]` that concatenate to it.

- `apollo`: Apollo's `User:{q}\\nAssistant:{a}<|endoftext|>` (medbase_ray.models.chat), with
  the tokenizer's own end-of-text token;
- `template`: the tokenizer's `chat_template`. Each assistant turn is found by rendering
  the conversation up to it: the text that turn adds is trained on, the rest is context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from medbase_ray.models.chat import EOS, apollo_segments

ChatFormat = Literal["apollo", "template"]
CHAT_FORMATS: tuple[str, ...] = ("apollo", "template")


class ChatFormatError(ValueError):
    """A conversation that the chat format cannot render (the reason is in the message)."""


def conversation_segments(
    tokenizer, turns: Sequence[str], chat_format: str
) -> list[tuple[str, bool]]:
    """Turns (user, assistant, ...) -> [(text, is_trained)] in `chat_format`."""
    if chat_format == "apollo":
        return apollo_segments(turns, eos=tokenizer.eos_token or EOS)
    if chat_format == "template":
        return template_segments(tokenizer, turns)
    raise ValueError(f"unknown chat format {chat_format!r}; known: {', '.join(CHAT_FORMATS)}")


def _messages(turns: Sequence[str]) -> list[dict[str, str]]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)
    ]


def template_segments(tokenizer, turns: Sequence[str]) -> list[tuple[str, bool]]:
    """Segments from the tokenizer's chat template.

    The template must render each conversation as a prefix of its continuations (true
    of the usual templates); the text an assistant turn adds (its content and the
    template's end-of-turn token) is trained on, its trailing whitespace is not.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ChatFormatError("the tokenizer has no chat_template; use chat_format 'apollo'")
    messages = _messages(turns)
    segments: list[tuple[str, bool]] = []
    rendered = ""
    for i in range(len(messages)):
        is_assistant = i % 2 == 1
        try:
            text = tokenizer.apply_chat_template(
                messages[: i + 1], tokenize=False, add_generation_prompt=not is_assistant
            )
        except Exception as exc:  # jinja raises its own errors (e.g. role alternation)
            raise ChatFormatError(f"chat template failed at turn {i}: {exc}") from exc
        if not text.startswith(rendered):
            raise ChatFormatError(
                f"chat template is not prefix-stable at turn {i}: rendering more turns "
                "changed the text of earlier ones"
            )
        segments.append((text[len(rendered) :], is_assistant))
        rendered = text
    return _move_trailing_space(segments)


def _move_trailing_space(segments: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """`("a<|im_end|>\\n", True)` -> `("a<|im_end|>", True), ("\\n", False)`: only the
    answer and its end-of-turn token carry labels."""
    out: list[tuple[str, bool]] = []
    for text, trained in segments:
        if trained:
            body = text.rstrip()
            tail = text[len(body) :]
            out.append((body, True))
            if tail:
                out.append((tail, False))
        else:
            out.append((text, False))
    merged: list[tuple[str, bool]] = []
    for text, trained in out:  # join neighbouring context segments
        if merged and not trained and not merged[-1][1]:
            merged[-1] = (merged[-1][0] + text, False)
        elif text:
            merged.append((text, trained))
    return merged
