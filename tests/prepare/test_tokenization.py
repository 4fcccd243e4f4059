"""Chat formats and loss masks: labels are exactly the assistant spans."""

from __future__ import annotations

import numpy as np
import pytest

from medbase_ray.models.chat import apollo_segments
from medbase_ray.prepare.chat_format import (
    ChatFormatError,
    conversation_segments,
    template_segments,
)
from medbase_ray.prepare.tokenization import (
    IGNORE_INDEX,
    fit_to_seq_len,
    tokenize_conversation,
    tokenize_conversations,
)


def labelled_spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    """Maximal runs of labelled positions, as the ids at those positions."""
    spans, current = [], []
    for tok, lab in zip(ids, labels, strict=True):
        if lab != IGNORE_INDEX:
            assert lab == tok  # labels are unshifted: the token at that position
            current.append(tok)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return spans


def test_labels_are_exactly_the_assistant_turns(tokenizer, bundled_conversations) -> None:
    multi_turn = [r for r in bundled_conversations if len(r["turns"]) >= 4][:5]
    assert multi_turn, "the bundled sample has multi-turn dialogues"
    for record in bundled_conversations[:40] + multi_turn:
        turns = record["turns"]
        ids, labels = tokenize_conversation(tokenizer, turns, "apollo")
        assert tokenizer.decode(ids) == "".join(t for t, _ in apollo_segments(turns))
        spans = [tokenizer.decode(s) for s in labelled_spans(ids, labels)]
        assert spans == [f"{a}<|endoftext|>" for a in turns[1::2]], record["id"]
        assert labels[0] == IGNORE_INDEX


def test_template_format_of_the_tiny_tokenizer_matches_apollo(
    tokenizer, bundled_conversations
) -> None:
    # The embedded tokenizer's chat_template is the Apollo format written in Jinja.
    for record in bundled_conversations[:20]:
        turns = record["turns"]
        assert template_segments(tokenizer, turns) == apollo_segments(turns)
        assert tokenize_conversation(tokenizer, turns, "template") == tokenize_conversation(
            tokenizer, turns, "apollo"
        )


QWEN_LIKE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_template_labels_answer_and_end_of_turn_not_the_newline(tokenizer) -> None:
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = QWEN_LIKE
    turns = ["What lowers fever?", "Paracetamol.", "And the dose?", "Up to 4 g a day."]
    segments = conversation_segments(tok, turns, "template")
    assert [t for t, trained in segments if trained] == [
        "Paracetamol.<|im_end|>",
        "Up to 4 g a day.<|im_end|>",
    ]
    assert "".join(t for t, _ in segments) == tok.apply_chat_template(
        [
            {"role": "user" if i % 2 == 0 else "assistant", "content": t}
            for i, t in enumerate(turns)
        ],
        tokenize=False,
    )
    ids, labels = tokenize_conversation(tok, turns, "template")
    spans = [tok.decode(s) for s in labelled_spans(ids, labels)]
    assert spans == ["Paracetamol.<|im_end|>", "Up to 4 g a day.<|im_end|>"]


def test_template_errors_are_chat_format_errors(tokenizer) -> None:
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = None
    with pytest.raises(ChatFormatError, match="no chat_template"):
        conversation_segments(tok, ["q", "a"], "template")
    # A template that rewrites earlier turns when more follow cannot be split into turns.
    tok.chat_template = (
        "{{ messages | length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(ChatFormatError, match="prefix-stable"):
        conversation_segments(tok, ["q", "a"], "template")
    samples = tokenize_conversations(tok, [["q", "a"]], "template", 64)
    assert samples[0].reject is not None and "prefix-stable" in samples[0].reject[1]


def test_overlong_truncate_keeps_the_head_and_drop_rejects() -> None:
    ids = np.arange(10, dtype=np.int32)
    labels = np.where(ids >= 3, ids, IGNORE_INDEX).astype(np.int32)
    cut = fit_to_seq_len(ids, labels, 6, "truncate")
    assert cut.truncated and cut.reject is None and cut.input_ids.tolist() == [0, 1, 2, 3, 4, 5]
    assert cut.labels.tolist() == [IGNORE_INDEX] * 3 + [3, 4, 5]
    dropped = fit_to_seq_len(ids, labels, 6, "drop")
    assert dropped.dropped and "over-long: 10 tokens > seq_len 6" in dropped.reject[1]
    fits = fit_to_seq_len(ids, labels, 10, "drop")
    assert not fits.truncated and fits.reject is None and len(fits.input_ids) == 10
    # Cut before the first answer token: nothing left to learn, dropped either way.
    nothing = fit_to_seq_len(ids, labels, 3, "truncate")
    assert nothing.dropped and "no assistant token" in nothing.reject[1]


def test_batched_tokenization_equals_one_by_one(tokenizer, bundled_conversations) -> None:
    convs = [r["turns"] for r in bundled_conversations[::7]]
    batch = tokenize_conversations(tokenizer, convs, "apollo", seq_len=100_000)
    for turns, sample in zip(convs, batch, strict=True):
        ids, labels = tokenize_conversation(tokenizer, turns, "apollo")
        assert sample.input_ids.tolist() == ids and sample.labels.tolist() == labels
        # The segment-wise encoding decodes to the text the model is trained on.
        assert tokenizer.decode(ids) == "".join(t for t, _ in apollo_segments(turns))
