"""Packing leaks nothing across samples: the loss of a packed row equals the
token-weighted loss of its samples run one by one (tiny model, bundled data).

transformers (5.x, sdpa) builds the block-diagonal mask from position_ids only when no
attention_mask is passed and use_cache=False, which is how rows must be fed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medbase_ray.prepare.manifest import pad_id_of
from medbase_ray.prepare.packing import assemble_rows, pack_best_fit
from medbase_ray.prepare.tokenization import tokenize_conversations


@pytest.fixture(scope="module")
def model(tiny_dir):
    from medbase_ray.models.loading import load_model

    m = load_model(str(tiny_dir), dtype="float32")
    m.eval()
    return m


def run(model, ids, labels, position_ids=None, attention_mask=None):
    """(sum of token losses, labelled tokens, logits [T, V]) of one sequence."""
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(ids)[None].long(),
            labels=torch.tensor(labels)[None].long(),
            position_ids=None if position_ids is None else torch.tensor(position_ids)[None].long(),
            attention_mask=attention_mask,
            use_cache=False,
        )
    n = int((torch.tensor(labels)[1:] != -100).sum())  # HF shifts the labels by one
    return float(out.loss) * n, n, out.logits[0]


def test_packed_row_loss_equals_samples_one_by_one(model, tokenizer, bundled_conversations):
    seq_len = 256
    convs = [r["turns"] for r in bundled_conversations[::5][:60]]
    samples = [
        s for s in tokenize_conversations(tokenizer, convs, "apollo", seq_len) if s.reject is None
    ]
    lengths = [len(s.input_ids) for s in samples]
    bins = pack_best_fit(lengths, seq_len)
    rows = assemble_rows(
        [s.input_ids for s in samples],
        [s.labels for s in samples],
        bins,
        seq_len,
        pad_id_of(tokenizer),
    )
    multi = [r for r, b in enumerate(bins) if len(b) >= 3][:2]
    assert multi, "rows holding several samples"
    for r in multi:
        packed, n_packed, logits = run(
            model, rows["input_ids"][r], rows["labels"][r], rows["position_ids"][r]
        )
        alone = [run(model, samples[i].input_ids, samples[i].labels) for i in bins[r]]
        total, n_alone = sum(a[0] for a in alone), sum(a[1] for a in alone)
        assert n_packed == n_alone
        assert abs(packed - total) / total < 1e-4, (r, packed, total)
        n_real = int(rows["n_real_tokens"][r])
        one_by_one = torch.cat([a[2] for a in alone])
        assert (logits[:n_real] - one_by_one).abs().max() < 1e-3

    # The same row with an all-ones mask lets each sample see the previous ones: the
    # logits after the first sample move, which the checks above would catch.
    _, _, leaky = run(
        model,
        rows["input_ids"][r],
        rows["labels"][r],
        rows["position_ids"][r],
        attention_mask=torch.ones(1, seq_len, dtype=torch.long),
    )
    first = len(samples[bins[r][0]].input_ids)
    assert (leaky[first:n_real] - one_by_one[first:]).abs().max() > 0.05


def test_padding_does_not_change_the_loss(model, tokenizer, bundled_conversations):
    sample = tokenize_conversations(tokenizer, [bundled_conversations[0]["turns"]], "apollo", 512)[
        0
    ]
    n = len(sample.input_ids)
    rows = assemble_rows([sample.input_ids], [sample.labels], [[0]], n + 37, pad_id_of(tokenizer))
    padded = run(model, rows["input_ids"][0], rows["labels"][0], rows["position_ids"][0])[0]
    alone = run(model, sample.input_ids, sample.labels)[0]
    assert abs(padded - alone) / alone < 1e-4
    assert np.all(rows["labels"][0, n:] == -100)
