"""The manifest of a prepared directory, and the fingerprint that ties it to a tokenizer.

    prepared/
      manifest.json        per source: rows, samples, real tokens, padding fraction,
                           truncated / dropped / rejected, shards; the fingerprint
      <source>_<lang>/     part-*.parquet in the packed-row contract
      rejects/             part-*.jsonl, one line per rejected or dropped conversation
      config.yaml          the resolved config it was made with
      summary.json         read = kept + rejected, rejects by reason (also in _SUCCESS)
      _SUCCESS             written last (medbase_ray.stage.StageOutput): complete

Training calls `check_fingerprint` so that rows tokenized for another tokenizer, chat
format or sequence length are refused before a step is run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

from medbase_ray import storage
from medbase_ray.corpus.rejects import AllRejected
from medbase_ray.stage import StageOutput

FORMAT = "medbase-prepared/1"
MANIFEST_FILE = "manifest.json"
REJECTS_DIR = "rejects"
COUNTS = ("rows", "samples", "real_tokens", "truncated", "dropped", "rejected")


class PrepareError(RuntimeError):
    """A prepared directory that cannot be reused or written."""


class FingerprintMismatch(ValueError):
    """Prepared data made for another tokenizer, chat format or seq_len."""


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of what decides the ids: the vocabulary, merges, normalizer, added and
    special tokens (not the Python class, which differs between loaders)."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # Padding and truncation are call-time settings: a call with padding=True
        # writes them into the backend, and they change no token id.
        state.pop("padding", None)
        state.pop("truncation", None)
        h.update(json.dumps(state, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode("utf-8"))
    specials = {"eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id}
    h.update(json.dumps(specials, sort_keys=True).encode("utf-8"))
    return h.hexdigest()[:16]


def fingerprint(tokenizer, chat_format: str, seq_len: int) -> str:
    """Tokenizer + chat format (+ the template itself when it is used) + seq_len."""
    h = hashlib.sha256()
    h.update(tokenizer_fingerprint(tokenizer).encode())
    h.update(f"|{chat_format}|{seq_len}|".encode())
    if chat_format == "template":
        h.update((tokenizer.chat_template or "").encode("utf-8"))
    return h.hexdigest()[:16]


def check_fingerprint(manifest: dict[str, Any], tokenizer, chat_format: str) -> None:
    """Raise FingerprintMismatch, saying what differs, unless `manifest` was prepared
    with this tokenizer and chat format (at the manifest's own seq_len)."""
    where = manifest.get("path", "the prepared data")
    if manifest.get("chat_format") != chat_format:
        raise FingerprintMismatch(
            f"{where} was prepared with chat format {manifest.get('chat_format')!r}, "
            f"this run uses {chat_format!r}: run `medbase prepare` again with this model "
            "and chat format (or another run.name)"
        )
    if manifest.get("tokenizer_fingerprint") != tokenizer_fingerprint(tokenizer):
        raise FingerprintMismatch(
            f"{where} was prepared with another tokenizer (fingerprint "
            f"{manifest.get('tokenizer_fingerprint')}, this run's is "
            f"{tokenizer_fingerprint(tokenizer)}; tokenizer was "
            f"{manifest.get('tokenizer', {}).get('name_or_path')!r}): its token ids mean "
            "nothing to this model; run `medbase prepare` again with this model"
        )
    expected = fingerprint(tokenizer, chat_format, int(manifest.get("seq_len", -1)))
    if manifest.get("fingerprint") != expected:
        raise FingerprintMismatch(
            f"{where}: fingerprint {manifest.get('fingerprint')} does not match this "
            f"tokenizer, chat format and seq_len ({expected}); prepare the data again"
        )


def read_manifest(prepared_dir: str) -> dict[str, Any]:
    """The manifest of a complete prepared directory (with `path` set to it)."""
    if not StageOutput(prepared_dir).is_complete():
        raise FileNotFoundError(
            f"{prepared_dir} is not a complete prepared directory (no _SUCCESS); "
            "run `medbase prepare` (again) first"
        )
    manifest = json.loads(storage.read_bytes(storage.join(prepared_dir, MANIFEST_FILE)))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{prepared_dir}/{MANIFEST_FILE}: format {manifest.get('format')!r}")
    manifest["path"] = prepared_dir
    return manifest


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


def block_counts(table: pa.Table) -> dict[tuple[str | None, str | None], dict[str, int]]:
    """Counts of a block of the packed stream, per (source, language)."""
    out: dict[tuple[str | None, str | None], dict[str, int]] = {}
    cols = table.select(
        ["source", "language", "n_real_tokens", "n_samples", "n_truncated", "reject"]
    ).to_pydict()
    for s, lang, real, n, trunc, rej in zip(*cols.values(), strict=True):
        c = out.setdefault((s, lang), empty_counts())
        if rej is None:
            c["rows"] += 1
            c["samples"] += n
            c["real_tokens"] += real
            c["truncated"] += trunc
        else:
            c["dropped" if json.loads(rej).get("kind") == "dropped" else "rejected"] += 1
    return out


def add_counts(into: dict[str, int], other: dict[str, int]) -> None:
    for k in COUNTS:
        into[k] += other.get(k, 0)


def build_manifest(
    counts: dict[tuple[str | None, str | None], dict[str, int]],
    shards: list[dict[str, Any]],
    *,
    seq_len: int,
    tokenizer,
    tokenizer_name: str,
    chat_format: str,
    packing: str,
    config: dict[str, Any],
    reject_files: list[str],
    reasons: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The manifest: per source counts and shards, totals, fingerprint.

    Rejects whose source cannot be known (an unreadable line) are counted in the totals
    only. conversations = samples + dropped + rejected.
    """
    from medbase_ray.prepare.stream import source_key

    sources: dict[str, dict[str, Any]] = {}
    totals = empty_counts()
    for (source, language), c in sorted(counts.items(), key=lambda kv: str(kv[0])):
        add_counts(totals, c)
        if source is None or language is None:
            continue
        key = source_key(source, language)
        entry = sources.setdefault(
            key, {"source": source, "language": language, **empty_counts(), "shards": []}
        )
        add_counts(entry, c)
    for shard in sorted(shards, key=lambda s: s["path"]):
        entry = sources[shard["key"]]
        entry["shards"].append({"path": shard["path"], "rows": shard["rows"]})
    for entry in sources.values():
        slots = entry["rows"] * seq_len
        entry["padding_fraction"] = round(1 - entry["real_tokens"] / slots, 6) if slots else 0.0
    slots = totals["rows"] * seq_len
    totals["padding_fraction"] = round(1 - totals["real_tokens"] / slots, 6) if slots else 0.0
    totals["conversations"] = totals["samples"] + totals["dropped"] + totals["rejected"]
    return {
        "format": FORMAT,
        "fingerprint": fingerprint(tokenizer, chat_format, seq_len),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "tokenizer": {
            "name_or_path": tokenizer_name,
            "vocab_size": len(tokenizer),
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": pad_id_of(tokenizer),
        },
        "chat_format": chat_format,
        "seq_len": seq_len,
        "packing": packing,
        "sources": sources,
        "totals": totals,
        "rejects": sorted(reject_files),
        "rejected_by_reason": reasons or {},
        "config": config,
    }


def pad_id_of(tokenizer) -> int:
    """The pad id of packed rows: the tokenizer's pad token, else its end-of-text."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise ValueError("the tokenizer has neither a pad nor an eos token to pad rows with")


def summary_table(manifest: dict[str, Any]) -> str:
    """The manifest's counts as a plain-text table (what `medbase prepare` prints)."""
    head = ("rows", "samples", "real_tokens", "padding", "truncated", "dropped", "rejected")
    lines = [f"{'source':<28}" + "".join(f"{h:>12}" for h in head)]
    entries = [*manifest["sources"].items(), ("total", manifest["totals"])]
    for key, s in entries:
        values = [s["rows"], s["samples"], s["real_tokens"], f"{s['padding_fraction']:.2%}"]
        values += [s["truncated"], s["dropped"], s["rejected"]]
        lines.append(f"{key:<28}" + "".join(f"{v:>12}" for v in values))
    for reason, n in manifest.get("rejected_by_reason", {}).items():
        lines.append(f"rejected {n:>8}  {reason}")
    if manifest["rejects"]:
        lines.append(f"rejects: {', '.join(manifest['rejects'])}")
    return "\n".join(lines)


def complete_manifest(out: StageOutput, config: dict[str, Any], fp: str) -> dict[str, Any] | None:
    """The manifest of a complete output made with `config` and fingerprint `fp`; None
    when there is no complete output; PrepareError when one was made otherwise."""
    if out.summary() is None:
        return None
    manifest = read_manifest(out.uri)
    if manifest["config"] == config and manifest["fingerprint"] == fp:
        return manifest
    raise PrepareError(
        f"{out} is complete but was prepared with another config or tokenizer; "
        "choose another run.name or remove it"
    )


def merge_task_results(results: list[dict[str, Any]]) -> tuple[dict, list, list[str], dict]:
    """(counts per (source, language), shards, reject files, rejects by reason) of all
    write tasks."""
    counts: dict[tuple[str | None, str | None], dict[str, int]] = {}
    reasons: dict[str, int] = {}
    for r in results:
        for source, language, c in r["counts"]:
            add_counts(counts.setdefault((source, language), empty_counts()), c)
        for reason, n in r.get("reasons", {}).items():
            reasons[reason] = reasons.get(reason, 0) + n
    shards = [s for r in results for s in r["shards"]]
    files = [r["reject_file"] for r in results if r["reject_file"]]
    return counts, shards, files, dict(sorted(reasons.items(), key=lambda kv: -kv[1]))


def prepare_summary(out: StageOutput, manifest: dict[str, Any]) -> dict[str, Any]:
    """What the stage did, in the words of every stage's summary: read = kept +
    rejected (dropped over-long samples are among the rejected), rejects by reason."""
    t = manifest["totals"]
    return {
        "output_dir": out.uri,
        "read": t["conversations"],
        "kept": t["samples"],
        "rejected": t["dropped"] + t["rejected"],
        "dropped": t["dropped"],
        "rejected_by_reason": manifest.get("rejected_by_reason", {}),
        "rejects_dir": out.child(REJECTS_DIR),
        "rows": t["rows"],
        "real_tokens": t["real_tokens"],
        "padding_fraction": t["padding_fraction"],
        "fingerprint": manifest["fingerprint"],
    }


def check_not_all_rejected(summary: dict[str, Any]) -> None:
    """AllRejected when there were rows and none was kept."""
    if summary["read"] and not summary["kept"]:
        reasons = summary["rejected_by_reason"]
        raise AllRejected("prepare", summary["read"], reasons, summary["rejects_dir"])
