"""The fingerprint that ties prepared data to a tokenizer, chat format and seq_len."""

from __future__ import annotations

from pathlib import Path

import pytest

from medbase_ray.prepare.manifest import (
    FingerprintMismatch,
    check_fingerprint,
    fingerprint,
    tokenizer_fingerprint,
)


def reload(tokenizer, tmp_path: Path):
    tokenizer.save_pretrained(tmp_path)
    return tokenizer.__class__.from_pretrained(tmp_path)


def test_fingerprint_is_stable_across_saving_and_padded_calls(tokenizer, tmp_path: Path) -> None:
    before = fingerprint(tokenizer, "apollo", 512)
    copy = reload(tokenizer, tmp_path)
    assert fingerprint(copy, "apollo", 512) == before
    # A padded, truncated call stores padding/truncation in the backend: no id changes.
    copy(["a fever", "a high fever for three days"], padding=True, truncation=True, max_length=4)
    assert fingerprint(copy, "apollo", 512) == before


def test_fingerprint_changes_with_what_changes_the_ids(tokenizer, tmp_path: Path) -> None:
    base = fingerprint(tokenizer, "apollo", 512)
    assert fingerprint(tokenizer, "apollo", 1024) != base
    assert fingerprint(tokenizer, "template", 512) != base
    other = reload(tokenizer, tmp_path)
    other.add_tokens(["<|extra|>"])
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)
    # The chat template only matters when it is the chat format.
    other = reload(tokenizer, tmp_path)
    other.chat_template = "{{ messages[0]['content'] }}"
    assert fingerprint(other, "apollo", 512) == base
    assert fingerprint(other, "template", 512) != fingerprint(tokenizer, "template", 512)


def test_check_fingerprint_names_what_differs(tokenizer) -> None:
    manifest = {
        "path": "runs/x/prepared",
        "chat_format": "apollo",
        "seq_len": 512,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "fingerprint": fingerprint(tokenizer, "apollo", 512),
        "tokenizer": {"name_or_path": "tiny"},
    }
    check_fingerprint(manifest, tokenizer, "apollo")
    with pytest.raises(FingerprintMismatch, match="runs/x/prepared was prepared with chat format"):
        check_fingerprint(manifest, tokenizer, "template")
    with pytest.raises(FingerprintMismatch, match="another tokenizer"):
        check_fingerprint({**manifest, "tokenizer_fingerprint": "0" * 16}, tokenizer, "apollo")
    with pytest.raises(FingerprintMismatch, match="does not match"):
        check_fingerprint({**manifest, "seq_len": 256}, tokenizer, "apollo")
