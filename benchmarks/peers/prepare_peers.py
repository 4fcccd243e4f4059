"""The data preparation a user would pick instead of `medbase prepare`, for benchmarks/prepare.py.

Each peer is a `setup_*` function run in a process of its own: it imports its library,
loads the tokenizer and returns (work, count): `work()` is what is timed, `count(result)`
reads the figures of its output afterwards ({"real_tokens", ...}), so that imports and
counting stay off the clock.

- `setup_hf_datasets`: Hugging Face `datasets` as LLaMA-Factory and Axolotl use it:
  `load_dataset("json")`, then `Dataset.map(batched=True, num_proc=2)` of medbase's own
  `tokenize_conversations` (same chat format, same loss mask, same truncation), the
  tokenized samples cached as Arrow files; then Axolotl's packing on those samples:
  `MultipackBatchSampler` (first-fit-decreasing bins in parallel groups, numba), as
  Axolotl's trainer builds it for micro-batch 1 (bins of seq_len tokens). Axolotl packs at
  batch time, so it writes no packed rows: its time is the tokenization plus the bins.
- `setup_llamafactory`: LLaMA-Factory's own `get_dataset` (its sharegpt converter, its
  template's per-turn `tokenizer.encode`, `PackedSupervisedDatasetProcessor` with its
  `greedy_knapsack` over each map batch, `num_proc=2`, `neat_packing`: samples do not
  attend to each other, as medbase's rows), saved with `save_to_disk`. The Apollo
  format is registered as its template (`User:{q}\\nAssistant:` / `{a}<eos>`): its template
  has no separator between turns, so a multi-turn dialogue is one `\\n` token shorter
  per later turn than medbase's.

Both read JSONL written from the ApolloCorpus files beforehand (`write_inputs`, not
timed: neither reads ApolloCorpus's list-of-lists JSON).
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from medbase_ray.models.loading import load_tokenizer
from medbase_ray.models.tiny import tiny_model_dir
from medbase_ray.prepare.tokenization import tokenize_conversations

NUM_PROC = 2  # the CPUs medbase's Ray gets
# LLaMA-Factory and Axolotl pin versions of torch, transformers and datasets that this
# project's torch 2.13 CPU wheel and transformers 5 do not meet: they are installed
# without their dependencies (`make peers`), and only their data code is imported.
INSTALL_HINT = "make peers (pip install -e '.[peers]'; pip install --no-deps llamafactory==0.9.5 axolotl==0.19.0)"


def versions() -> dict[str, str]:
    """Installed versions of the peers' packages ('not installed' where missing)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("datasets", "llamafactory", "axolotl", "numba"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_inputs(corpus: Path, out: Path) -> tuple[Path, Path]:
    """The corpus's conversations as JSONL: {"turns"} lines and sharegpt lines."""
    turns_path, sharegpt_path = out / "conversations.jsonl", out / "sharegpt.jsonl"
    with (
        turns_path.open("w", encoding="utf-8") as t,
        sharegpt_path.open("w", encoding="utf-8") as s,
    ):
        for path in sorted(corpus.rglob("*.json")):
            for turns in json.loads(path.read_text(encoding="utf-8")):
                t.write(json.dumps({"turns": turns}, ensure_ascii=False) + "\n")
                messages = [
                    {"from": "human" if i % 2 == 0 else "gpt", "value": text}
                    for i, text in enumerate(turns)
                ]
                s.write(json.dumps({"conversations": messages}, ensure_ascii=False) + "\n")
    return turns_path, sharegpt_path


def tokenize_batch(batch: dict, tokenizer, seq_len: int) -> dict:
    """datasets.map function: medbase's tokenization of a batch of conversations."""
    samples = tokenize_conversations(tokenizer, batch["turns"], "apollo", seq_len)
    kept = [s for s in samples if s.reject is None]
    return {
        "input_ids": [s.input_ids for s in kept],
        "labels": [s.labels for s in kept],
    }


Peer = tuple[Callable[[], dict], Callable[[dict], dict]]


def setup_hf_datasets(inputs: Path, seq_len: int, work_dir: Path) -> Peer:
    import datasets
    from axolotl.utils.samplers.multipack import MultipackBatchSampler
    from axolotl.utils.samplers.utils import get_dataset_lengths
    from torch.utils.data import SequentialSampler

    tokenizer = load_tokenizer(str(tiny_model_dir()))
    datasets.disable_progress_bars()

    def work() -> dict:
        ds = datasets.load_dataset(
            "json", data_files=str(inputs), split="train", cache_dir=str(work_dir / "cache")
        )
        ds = ds.map(
            tokenize_batch,
            batched=True,
            num_proc=NUM_PROC,
            remove_columns=ds.column_names,
            fn_kwargs={"tokenizer": tokenizer, "seq_len": seq_len},
        )
        started = time.perf_counter()
        # Axolotl's trainer (AxolotlTrainer._create_multipack_sampler), micro-batch 1.
        sampler = MultipackBatchSampler(
            SequentialSampler(ds),
            lengths=get_dataset_lengths(ds),
            batch_max_len=seq_len,
            batch_size=1,
            group_size=100_000,  # axolotl's sample_packing_group_size default
            bin_size=200,  # axolotl's sample_packing_bin_size default
            num_processes=NUM_PROC,
            drop_last=True,
        )
        bins = len(sampler.generate_batches(set_stats=True))
        return {
            "real_tokens": int(get_dataset_lengths(ds).sum()),
            "samples": ds.num_rows,
            "multipack_bins": bins,
            "multipack_padding": 1 - sampler.efficiency(),
            "multipack_s": time.perf_counter() - started,
        }

    return work, lambda result: result


def register_apollo_template() -> None:
    """The Apollo chat format as a LLaMA-Factory template (see the module docstring)."""
    from llamafactory.data.formatter import StringFormatter
    from llamafactory.data.template import register_template

    register_template(
        name="apollo",
        format_user=StringFormatter(slots=["User:{{content}}\nAssistant:"]),
        format_assistant=StringFormatter(slots=["{{content}}", {"eos_token"}]),
    )


def import_llamafactory_data() -> types.ModuleType:
    """`llamafactory.data`, which imports torchaudio at its top for audio inputs.

    No torchaudio wheel loads against torch 2.13 (the newest, 2.11.1, fails with
    "OSError: Could not load this library: .../torchaudio/lib/_torchaudio.so"), and no
    audio is read here: an empty module stands in for it when the real one is missing
    or fails. transformers is imported first so that its own check still finds none.
    """
    import transformers  # noqa: F401

    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    import llamafactory.data

    return llamafactory.data


def setup_llamafactory(inputs: Path, seq_len: int, work_dir: Path) -> Peer:
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")  # its pins: see INSTALL_HINT
    lf_data = import_llamafactory_data()
    from datasets import load_from_disk
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    register_apollo_template()
    (inputs.parent / "dataset_info.json").write_text(
        json.dumps({"apollo": {"file_name": inputs.name, "formatting": "sharegpt"}})
    )
    tokenizer = load_tokenizer(str(tiny_model_dir()))
    tokenized = work_dir / "tokenized"
    data_args = DataArguments(
        template="apollo",
        dataset="apollo",
        dataset_dir=str(inputs.parent),
        cutoff_len=seq_len,
        packing=True,
        neat_packing=True,
        preprocessing_num_workers=NUM_PROC,
        tokenized_path=str(tokenized),
        overwrite_cache=True,
    )
    model_args = ModelArguments(
        model_name_or_path=str(tiny_model_dir()), cache_dir=str(work_dir / "cache")
    )
    training_args = Seq2SeqTrainingArguments(output_dir=str(work_dir / "out"), report_to=[])
    template = lf_data.get_template_and_fix_tokenizer(tokenizer, data_args)

    def work() -> dict:
        lf_data.get_dataset(template, model_args, data_args, training_args, "sft", tokenizer)
        return {"tokenized": tokenized}

    def count(result: dict) -> dict:
        """Rows, real tokens and padding of the saved rows (after the clock)."""
        ds = load_from_disk(str(result.pop("tokenized")))["train"]
        ids = ds.data.column("input_ids").combine_chunks()
        flat = np.asarray(pa.ListArray.from_arrays(ids.offsets, ids.values).flatten())
        real = int((flat != tokenizer.pad_token_id).sum())
        return {"real_tokens": real, "rows": ds.num_rows, "padding": 1 - real / len(flat)}

    return work, count


PEERS = {"hf_datasets": setup_hf_datasets, "llamafactory": setup_llamafactory}
