"""Clean: records/s and peak memory of `medbase clean` against a single-process baseline.

The baseline is the straightforward implementation, in one process: the benchmark's
n-grams (the same tokens, n and whole short fields) as a Python dict of gram -> item,
each record's grams looked up one by one; exact duplicates in a dict of text hashes;
MinHash per record (numpy over that record's shingles, as datasketch does), the same
LSH bands in dicts of band -> first record, candidates checked on their signatures;
kept records and rejects (reason, item or kept record) written as JSONL. It reads the
same files with the same reader and does the same work: decontamination, exact and
near dedup, both outputs written.

The corpus: each conversation is 1-3 exchanges (a user turn and an assistant turn
drawn at random from all the bundled conversations of one language) plus a sentence of
8-20 random words of that language (16-40 characters for Chinese) at its end, so that
records are distinct, as a real corpus's are, while sharing the bundled phrasing. Planted:
1% exact copies (in another source), 2% near copies (one word of the last turn replaced,
its end changed) and 0.2% records quoting a benchmark question; files of 5,000 records.
About 2% of records are then near duplicates, 1% exact ones. The benchmark: the bundled
426 items plus synthetic items of random benchmark words (per language), ~15k in all.

records/s counts input records over the wall time of a run (index build included), Ray
already started and warm (a first small run, shown apart, starts its workers) and its
workers at the baseline's priority (nice 0).
Peak memory: the largest single process (driver or Ray worker, sampled every 50 ms),
at 1x and 4x the corpus; what must not grow with the corpus is what one process holds.

    .venv/bin/python benchmarks/clean.py            # 200k conversations (and 800k)
    .venv/bin/python benchmarks/clean.py --quick    # 20k (and 80k), about a minute

Prints a Markdown table, then (last line) the JSON list of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from medbase_ray.clean.batch import record_text
from medbase_ray.clean.index import item_fields
from medbase_ray.clean.minhash import lsh_params, minhash_signatures
from medbase_ray.clean.pipeline import run_clean
from medbase_ray.clean.text import dedup_text, normalize, tokens, uses_chars
from medbase_ray.config import PipelineConfig
from medbase_ray.corpus.readers import read_conversations, read_eval_items, sample_dir
from medbase_ray.ray_runtime import init_ray

sys.path.insert(0, str(Path(__file__).parent))
from prepare import Meter  # noqa: E402 (the resource meter of the prepare benchmark)

FILE_RECORDS = 5000


def build_corpus(root: Path, n_records: int, items: list[dict], seed: int = 0) -> int:
    """`n_records` conversations in JSONL files of FILE_RECORDS (module docstring);
    returns the count."""
    rng = random.Random(seed)
    users: dict[str, list[str]] = {}
    answers: dict[str, list[str]] = {}
    for r in read_conversations(sample_dir() / "apollo")[0]:
        users.setdefault(r["language"], []).extend(r["turns"][0::2])
        answers.setdefault(r["language"], []).extend(r["turns"][1::2])
    langs = sorted(users)
    vocab = {lang: _vocabulary(users[lang] + answers[lang], lang) for lang in langs}
    questions = {lang: [it["question"] for it in items if it["language"] == lang] for lang in langs}
    root.mkdir(parents=True)
    rows: list[dict] = []
    written, part, k = 0, 0, 0
    while written + len(rows) < n_records:
        k += 1
        lang = langs[k % len(langs)]
        turns = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            turns += [rng.choice(users[lang]), rng.choice(answers[lang])]
        turns[-1] += " " + _detail(rng, vocab[lang], lang)  # what makes each record its own
        rows.append({"id": f"syn:{k}", "source": f"synth{k % 4}", "language": lang, "turns": turns})
        roll = rng.random()
        if roll < 0.01:  # an exact copy in another source
            rows.append({**rows[-1], "id": f"copy:{k}", "source": "copies"})
        elif roll < 0.03:  # a near copy: one token of the detail replaced, an end changed
            near = [*turns[:-1], _edit(rng, turns[-1], vocab[lang], lang)]
            rows.append({**rows[-1], "id": f"near:{k}", "source": "copies", "turns": near})
        elif roll < 0.032 and questions[lang]:  # quotes a benchmark question
            q = rng.choice(questions[lang])
            rows.append(
                {**rows[-1], "id": f"quote:{k}", "turns": [*turns[:-1], f"{turns[-1]} {q}"]}
            )
        if len(rows) >= FILE_RECORDS:
            write_jsonl(root / f"part-{part:05d}.jsonl", rows)
            written, part, rows = written + len(rows), part + 1, []
    if rows:
        write_jsonl(root / f"part-{part:05d}.jsonl", rows)
    return written + len(rows)


def _vocabulary(texts: list[str], lang: str) -> list[str]:
    """The distinct words (characters for Chinese) of `texts`, sorted."""
    if lang == "zh":
        return sorted({c for t in texts for c in t if c.isalnum()})
    return sorted({w.strip(".,;:!?¿¡،؟।") for t in texts for w in t.split()} - {""})


def _detail(rng: random.Random, vocab: list[str], lang: str) -> str:
    """A sentence of random words of the language: 8-20 words, or 16-40 characters."""
    if lang == "zh":
        return "".join(rng.choices(vocab, k=rng.randint(16, 40))) + "。"
    return " ".join(rng.choices(vocab, k=rng.randint(8, 20))) + "."


def _edit(rng: random.Random, text: str, vocab: list[str], lang: str) -> str:
    """`text` with one word (two characters for Chinese) replaced and its end changed."""
    sep = "" if lang == "zh" else " "
    toks = list(text) if lang == "zh" else text.split()
    at = rng.randrange(len(toks))
    toks[at : at + (2 if lang == "zh" else 1)] = [rng.choice(vocab)]
    return sep.join(toks).rstrip(".。") + ("!" if lang != "zh" else "！")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def build_benchmark(path: Path, n_items: int, seed: int = 0) -> list[dict]:
    """The bundled items plus synthetic ones of random benchmark words, as XMedBench JSON."""
    rng = random.Random(seed)
    bundled = [
        json.loads((sample_dir() / "xmedbench" / f"{s}.json").read_text()) for s in ("test", "dev")
    ]
    raw = bundled[0] + bundled[1]
    words: dict[str, list[str]] = {}
    for it in raw:
        words.setdefault(it["source"], []).extend(it["question"].split())
    sources = sorted(words)
    while len(raw) < n_items:
        source = rng.choice(sources)
        zh = source in ("medqa-mcmle", "cmmlu-medical")
        vocab = list("".join(words[source])) if zh else words[source]
        q = ("" if zh else " ").join(rng.choices(vocab, k=rng.randint(12, 30) * (2 if zh else 1)))
        opts = "\n".join(f"({c}) {' '.join(rng.choices(vocab, k=3))}" for c in "ABCD")
        raw.append({"question": q, "options": opts, "answer": "(A)", "source": source})
    path.write_text(json.dumps(raw, ensure_ascii=False))
    return read_eval_items(path)[0]


def run_baseline(
    corpus: Path, items: list[dict], cfg: PipelineConfig, out: Path, max_records: int | None = None
) -> dict:
    """One process, the straightforward way (module docstring): kept records to
    `out`/kept.jsonl, removed ones with the reason and what they match or duplicate to
    `out`/rejects.jsonl, as the stage writes its two outputs; returns decision counts.
    `max_records`: stop after the file that reaches it (its rate is what is compared)."""
    c = cfg.clean
    char_langs = frozenset(c.char_languages)
    n_of = {False: (c.ngram_words, c.min_words), True: (c.ngram_chars, c.min_chars)}
    index: dict[int, str] = {}
    lengths: dict[bool, set[int]] = {False: set(), True: set()}
    for it in items:
        for _, value in item_fields(it, c.fields):
            text = normalize(value)
            by_chars = uses_chars(it["language"], text, char_langs)
            toks, (n, floor) = tokens(text, by_chars), n_of[by_chars]
            if len(toks) < floor:
                continue
            k = min(n, len(toks))
            lengths[by_chars].add(k)
            for i in range(len(toks) - k + 1):
                index[hash((by_chars, *toks[i : i + k]))] = it["id"]
    bands, rows = lsh_params(c.jaccard_threshold, c.num_perm)
    exact_seen: dict[int, str] = {}
    buckets: dict[tuple[int, bytes], tuple[np.ndarray, str]] = {}
    counts = {"in": 0, "contaminated": 0, "exact_duplicate": 0, "near_duplicate": 0, "kept": 0}
    out.mkdir(parents=True, exist_ok=True)
    kept_file = (out / "kept.jsonl").open("w", encoding="utf-8")
    rejects_file = (out / "rejects.jsonl").open("w", encoding="utf-8")

    def reject(r: dict, reason: str, what: str) -> None:
        counts[reason] += 1
        row = {"id": r["id"], "source": r["source"], "reason": reason, "match": what}
        rejects_file.write(json.dumps(row, ensure_ascii=False) + "\n")

    for path in sorted(corpus.iterdir()):
        if max_records is not None and counts["in"] >= max_records:
            break
        for r in read_conversations(path)[0]:
            counts["in"] += 1
            text = record_text(r["turns"])
            norm = normalize(text)
            by_chars = uses_chars(r["language"], norm, char_langs)
            toks = tokens(norm, by_chars)
            item = next(
                (
                    index[g]
                    for k in lengths[by_chars]
                    for i in range(len(toks) - k + 1)
                    if (g := hash((by_chars, *toks[i : i + k]))) in index
                ),
                None,
            )
            if item is not None:
                reject(r, "contaminated", item)
                continue
            key = hash(dedup_text(text))
            if key in exact_seen:
                reject(r, "exact_duplicate", exact_seen[key])
                continue
            exact_seen[key] = r["id"]
            sig = minhash_signatures([text], c.num_perm, c.shingle_chars, c.seed)[0]
            band_ids = [(b, sig[b * rows : (b + 1) * rows].tobytes()) for b in range(bands)]
            near = next(
                (
                    buckets[bid][1]
                    for bid in band_ids
                    if bid in buckets and (sig == buckets[bid][0]).mean() >= c.jaccard_threshold
                ),
                None,
            )
            if near is not None:
                reject(r, "near_duplicate", near)
                continue
            for bid in band_ids:
                buckets.setdefault(bid, (sig, r["id"]))
            counts["kept"] += 1
            kept_file.write(json.dumps(r, ensure_ascii=False) + "\n")
    kept_file.close()
    rejects_file.close()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--items", type=int, default=15000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument(
        "--baseline-records",
        type=int,
        default=None,
        help="Run the baseline on the first files up to this many records only (its rate "
        "is about flat in the corpus size); default: the whole 1x corpus.",
    )
    parser.add_argument("--no-memory", action="store_true", help="Skip the 4x corpus run.")
    args = parser.parse_args()
    n = args.records or (20_000 if args.quick else 200_000)
    os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112 (Ray reads this exact name)
    init_ray(num_cpus=args.cpus)
    tmp = Path(tempfile.mkdtemp(prefix="clean-bench-"))
    items = build_benchmark(tmp / "bench.json", args.items)
    scales = (1,) if args.no_memory else (1, 4)
    sizes = {k: build_corpus(tmp / f"c{k}", k * n, items) for k in scales}

    def config(corpus: Path, name: str) -> PipelineConfig:
        cfg = PipelineConfig()
        cfg.run.root, cfg.run.name = str(tmp / "runs"), name
        cfg.clean.inputs = [str(corpus)]
        cfg.eval.benchmark = str(tmp / "bench.json")
        return cfg

    # A first, small run starts Ray's workers and imports the package in them; timed
    # runs then see warm workers, as the stage does after its first batch on a cluster.
    build_corpus(tmp / "c0", 2 * FILE_RECORDS, items, seed=1)
    start = time.monotonic()
    run_clean(config(tmp / "c0", "warmup"))
    cold_s = time.monotonic() - start
    rows = []
    results = {}
    for scale in scales:
        start = time.monotonic()
        with Meter(with_ray=True) as meter:
            summary = run_clean(config(tmp / f"c{scale}", f"x{scale}"))
        wall = time.monotonic() - start
        results[scale] = (wall, meter)
        t = summary["total"]
        removed = f"{t['removed_contaminated']} / {t['exact_duplicate']} / {t['near_duplicate']}"
        rows.append((f"medbase clean {scale}x", sizes[scale], wall, meter, removed))
    start = time.monotonic()
    with Meter(with_ray=False) as base_meter:
        base = run_baseline(
            tmp / "c1", items, config(tmp / "c1", "base"), tmp / "base", args.baseline_records
        )
    base_s = time.monotonic() - start
    removed = f"{base['contaminated']} / {base['exact_duplicate']} / {base['near_duplicate']}"
    rows.append(
        (f"baseline, 1 process, first {base['in']}", base["in"], base_s, base_meter, removed)
    )

    print(
        f"corpus {' and '.join(str(v) for v in sizes.values())} conversations, {len(items)} "
        f"benchmark items, {args.cpus} CPUs; the machine is shared: figures under load\n"
    )
    print(
        "| run | records | records/s | wall s | CPU s | records per CPU s | largest process MB "
        "| removed: contaminated / exact / near |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, count, wall, meter, removed in rows:
        print(
            f"| {name} | {count} | {count / wall:.0f} | {wall:.1f} | {meter.cpu_s:.1f} | "
            f"{count / max(meter.cpu_s, 1e-9):.0f} | {meter.largest / 2**20:.0f} | {removed} |"
        )
    print(f"\n(cold first run on {2 * FILE_RECORDS} records, not counted: {cold_s:.1f} s)")
    speed = (sizes[1] / results[1][0]) / (base["in"] / base_s)
    cpu_speed = (sizes[1] / results[1][1].cpu_s) / (base["in"] / base_meter.cpu_s)
    print(f"\nrecords/s vs baseline {speed:.2f}x (goal >= 2x); per CPU second {cpu_speed:.2f}x")
    figures = [
        {
            "name": "clean records/s vs baseline",
            "value": round(speed, 2),
            "goal": 2.0,
            "higher_is_better": True,
        },
    ]
    if 4 in results:
        memory = results[4][1].largest / results[1][1].largest
        print(f"largest process 4x/1x corpus {memory:.2f} (goal <= 1.2x)")
        figures.append(
            {
                "name": "clean peak memory 4x/1x corpus",
                "value": round(memory, 2),
                "goal": 1.2,
                "higher_is_better": False,
            }
        )
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
