"""Prepare: tokens/s, padding and peak memory of `medbase prepare` against the reference.

The reference is the approach of the Apollo code (src/process/prepare/
data_process_train_qwen.py): one process, `tokenizer.encode` per turn of each sample,
next-fit packing in order, every row in memory until it is written. Same tokenizer
(the embedded tiny one), same corpus, same chat format and seq_len, in one run; both
write Parquet. The corpus is the bundled conversations replicated (part-NNNN/ copies
of every file, each file holding its conversations REPEAT times) to >= 20 million
characters; memory is measured again at 4x that size.

tokens/s counts real (non-padding) tokens over the wall time of the run, Ray already
started and its workers warm (a cluster is started once, not per dataset); the cold
first run is shown apart. Ray's workers run at the reference's priority (nice 0). CPU
seconds (driver and workers) are shown too: on a machine shared with other work, wall
time depends on what else runs, CPU time much less.
Peak memory (sampled every 50 ms) is shown as the largest sum of the resident memory of
the driver and its Ray workers, and as the largest single process: the figure is the
latter's 4x/1x ratio, since what must not grow with the corpus is what one process
holds (the number of workers follows the CPUs, and whether two of them peak at the
same instant is chance).

The single-big-file case (issue 18) prepares one ApolloCorpus file (the bundled English
conversations repeated to --big-file-mb) against the same rows split into ten files, and
a file a tenth the size: tokens/s of one file over ten files (goal >= 0.9x), and the
largest process's peak memory of the big file over the tenth (goal <= 1.5x). Reading
streams (ijson) in blocks of prepare.task_input_mb, set here to a sixteenth of the file
so that blocks are smaller than the file at any --big-file-mb.

The peers (benchmarks/peers/prepare_peers.py, installed by `make peers`), on the same
1x corpus, tokenizer, chat format and seq_len, in the same run: Hugging Face
`datasets.map(batched=True, num_proc=2)` tokenization (the path LLaMA-Factory and Axolotl
take), Axolotl's multipack bins over it, and LLaMA-Factory's own `get_dataset` with its
greedy-knapsack packing. Figure: medbase's tokens/s over the fastest peer that packs
(Axolotl's row: tokenization + bins; LLaMA-Factory's) (goal >= 1.0x: not slower than what
a user would otherwise run); the tokenization-only row is shown, not compared. A peer that cannot be imported or
fails keeps its row, with the error. --quick leaves them out unless --peers is given.
The load average before and after is printed: the machine may be shared.

    .venv/bin/python benchmarks/prepare.py           # 20M characters (and 80M), minutes
    .venv/bin/python benchmarks/prepare.py --quick   # 3M characters (and 13M), under a minute
    .venv/bin/python benchmarks/prepare.py --quick --peers   # and the peers (minutes)
    .venv/bin/python benchmarks/prepare.py --big-file-only --big-file-mb 100

Prints a Markdown table, then (last line) the JSON list of figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from peers.prepare_peers import INSTALL_HINT, NUM_PROC, PEERS, write_inputs
from peers.prepare_peers import versions as peer_versions

from medbase_ray.config import load_config
from medbase_ray.corpus.readers import sample_dir
from medbase_ray.models.chat import apollo_segments
from medbase_ray.models.loading import load_tokenizer
from medbase_ray.prepare.manifest import pad_id_of
from medbase_ray.prepare.packing import assemble_rows
from medbase_ray.prepare.pipeline import run_prepare
from medbase_ray.prepare.tokenization import IGNORE_INDEX
from medbase_ray.ray_runtime import init_ray

# Conversations of a bundled file repeated in each copy (files of 0.2-3 MB), so that at
# 1x the file groups of one Ray task (prepare.task_input_mb) are already full and the
# 1x/4x memory comparison measures growth with the corpus, not with the group size.
REPEAT = 40
GOAL_SPEEDUP, GOAL_PADDING, GOAL_MEMORY_RATIO = 1.8, 0.01, 1.1
GOAL_BIG_FILE_SPEED, GOAL_BIG_FILE_MEMORY = 0.9, 1.5
GOAL_VS_PEER = 1.0  # tokens/s of medbase prepare over the fastest packing peer's
BIG_FILE_SOURCES = ("medicalGuideline_en_qa.json", "patient_en_dialogue.json")


def build_corpus(
    root: Path, target_chars: int, start_part: int = 0, repeat: int = REPEAT
) -> tuple[int, int]:
    """Copies of the bundled conversation files until `target_chars`; (chars, files)."""
    files = [f for f in sorted((sample_dir() / "apollo").glob("*.json")) if "_text" not in f.name]
    payloads = []
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8")) * repeat
        chars = sum(len(t) for conv in data for t in conv)
        payloads.append((f.name, json.dumps(data, ensure_ascii=False), chars))
    per_part = sum(c for _, _, c in payloads)
    parts = -(-target_chars // per_part)
    for j in range(start_part, start_part + parts):
        d = root / f"part-{j:04d}"
        d.mkdir(parents=True, exist_ok=True)
        for name, text, _ in payloads:
            (d / name).write_text(text, encoding="utf-8")
    return parts * per_part, parts * len(payloads)


class Meter:
    """Resources of this process and the workers of its local Ray (Ray's own agents
    apart), or of its child processes, while in the `with` block: peak resident memory (the largest sum at one
    instant, and the largest single process), and CPU seconds used."""

    def __init__(self, with_ray: bool, children: bool = False) -> None:
        self.children = children  # this process's own children (a peer's map workers)
        self.raylet = None
        if with_ray:
            import ray

            node = ray._private.worker._global_node
            self.raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
        self.peak = 0
        self.largest = 0
        self.cpu_s = 0.0
        self._stop = threading.Event()

    def _processes(self) -> list[psutil.Process]:
        procs = [psutil.Process(os.getpid())]
        if self.children:
            with contextlib.suppress(psutil.Error):
                procs += procs[0].children(recursive=True)
        if self.raylet is not None:
            for p in self.raylet.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a worker that just exited
                    if "Agent" not in p.name():
                        procs.append(p)
        return procs

    def _cpu(self) -> dict[int, float]:
        out = {}
        for p in self._processes():
            with contextlib.suppress(psutil.Error):  # a worker that just exited
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
        return out

    def _sample(self) -> None:
        sizes = []
        for p in self._processes():
            with contextlib.suppress(psutil.Error):
                sizes.append(p.memory_info().rss)
        self.peak = max(self.peak, sum(sizes))
        self.largest = max(self.largest, *sizes)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def __enter__(self) -> Meter:
        self._cpu_start = self._cpu()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        end = self._cpu()
        self.cpu_s = sum(t - self._cpu_start.get(pid, 0.0) for pid, t in end.items())


def run_reference(corpus: Path, seq_len: int, out: Path) -> dict:
    """Apollo's way: one process, encode per turn, next-fit in order, rows in memory.

    Run in a process of its own (see main), so that the memory it holds stays out of
    the driver's figures; the tokenizer is loaded before the clock starts."""
    tokenizer = load_tokenizer("tiny")
    pad = pad_id_of(tokenizer)
    with Meter(with_ray=False) as mem:
        t0 = time.perf_counter()
        ids_rows, label_rows, pos_rows = [], [], []
        row_ids, row_labels, row_lens = [], [], []
        real = 0

        def flush() -> None:
            rows = assemble_rows(row_ids, row_labels, [list(range(len(row_ids)))], seq_len, pad)
            ids_rows.append(rows["input_ids"][0].tolist())
            label_rows.append(rows["labels"][0].tolist())
            pos_rows.append(rows["position_ids"][0].tolist())
            row_ids.clear(), row_labels.clear(), row_lens.clear()

        for path in sorted(corpus.rglob("*.json")):
            for turns in json.loads(path.read_text(encoding="utf-8")):
                ids: list[int] = []
                labels: list[int] = []
                for text, trained in apollo_segments(turns, tokenizer.eos_token):
                    seg = tokenizer.encode(text, add_special_tokens=False)
                    ids += seg
                    labels += seg if trained else [IGNORE_INDEX] * len(seg)
                ids, labels = ids[:seq_len], labels[:seq_len]
                labels[0] = IGNORE_INDEX
                if sum(row_lens) + len(ids) > seq_len:  # next-fit, in order
                    flush()
                row_ids.append(ids), row_labels.append(labels), row_lens.append(len(ids))
                real += len(ids)
        if row_ids:
            flush()
        table = pa.table(
            {"input_ids": ids_rows, "labels": label_rows, "position_ids": pos_rows},
            schema=pa.schema(
                [(n, pa.list_(pa.int32())) for n in ("input_ids", "labels", "position_ids")]
            ),
        )
        pq.write_table(table, out)
        elapsed = time.perf_counter() - t0
    rows = len(ids_rows)
    return {
        "elapsed_s": elapsed,
        "real_tokens": real,
        "rows": rows,
        "padding": 1 - real / (rows * seq_len),
        "peak_mib": mem.peak / 2**20,
        "largest_mib": mem.largest / 2**20,
        "cpu_s": mem.cpu_s,
    }


def run_peer(name: str, inputs: Path, seq_len: int, work_dir: Path) -> dict:
    """One peer of benchmarks/peers/prepare_peers.py, in a process of its own (see main):
    its setup (imports, tokenizer) off the clock, then its work under the Meter, its map
    workers included; CPU seconds from os.times (workers that exited included)."""
    # stdout carries the table: what a peer prints (LLaMA-Factory prints a sample) goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        work, count = PEERS[name](inputs, seq_len, work_dir)
        cpu0 = os.times()
        with Meter(with_ray=False, children=True) as mem:
            t0 = time.perf_counter()
            result = work()
            elapsed = time.perf_counter() - t0
        cpu1 = os.times()
    cpu_s = sum(b - a for a, b in zip(cpu0[:4], cpu1[:4], strict=True))
    return count(result) | {
        "elapsed_s": elapsed,
        "peak_mib": mem.peak / 2**20,
        "largest_mib": mem.largest / 2**20,
        "cpu_s": cpu_s,
    }


def run_peers(corpus: Path, tmp: Path, seq_len: int) -> dict[str, dict]:
    """Every peer on the corpus, each in a fresh process; a peer that cannot be imported
    or fails gets {"error": ...} instead of figures, with the exact message."""
    turns, sharegpt = write_inputs(corpus, tmp)  # JSONL for load_dataset("json"): not timed
    spawn = multiprocessing.get_context("spawn")
    out = {}
    for name, inputs in (("hf_datasets", turns), ("llamafactory", sharegpt)):
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                out[name] = pool.submit(run_peer, name, inputs, seq_len, tmp / name).result()
        except ImportError as exc:
            out[name] = {"error": f"not installed: {INSTALL_HINT}: {type(exc).__name__}: {exc}"}
        except Exception as exc:  # the row says why instead of disappearing
            out[name] = {"error": " ".join(f"{type(exc).__name__}: {exc}".split())}
    return out


def print_peers(ours: dict, peers: dict[str, dict] | None, seq_len: int) -> float | None:
    """The peers' table; returns medbase tokens/s over the best packing peer's (None: no
    packing peer ran). The tokenization-only row is shown, not compared: it packs nothing."""
    print()
    versions = ", ".join(f"{k} {v}" for k, v in peer_versions().items())
    print(f"Peers: same corpus, tokenizer, chat format and seq_len, same run; versions: {versions}")
    print()
    print(
        f"| seq_len {seq_len} | tokens/s (wall) | CPU s (tokens per CPU-second) | rows | padding | peak memory: all / largest process |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")

    def line(name: str, r: dict, rows: str, padding: str) -> None:
        cpu = (
            "-"
            if r["cpu_s"] is None
            else f"{r['cpu_s']:.1f} ({r['real_tokens'] / r['cpu_s']:,.0f})"
        )
        print(
            f"| {name} | {r['real_tokens'] / r['elapsed_s']:,.0f} ({r['elapsed_s']:.1f} s) | "
            f"{cpu} | {rows} | {padding} | {r['peak_mib']:.0f} / {r['largest_mib']:.0f} MiB |"
        )

    line(
        "medbase prepare (Ray Data, best_fit), Parquet rows",
        ours,
        str(ours["rows"]),
        f"{ours['padding']:.2%}",
    )
    if peers is None:
        print(
            "| Hugging Face datasets.map, Axolotl multipack, LLaMA-Factory | skipped (--quick) | | | | |"
        )
        return None
    rates = []
    hf, lf = peers["hf_datasets"], peers["llamafactory"]
    hf_name = (
        f"HF datasets.map(batched, num_proc={NUM_PROC}), medbase's tokenizer function, not packed"
    )
    ax_name = "+ Axolotl MultipackBatchSampler bins (packs at batch time, no rows written)"
    if "error" in hf:
        print(f"| {hf_name}; {ax_name} | {hf['error']} | | | | |")
    else:
        # The same process then bins: its CPU time and memory are shown on the next row.
        tok = hf | {"elapsed_s": hf["elapsed_s"] - hf["multipack_s"], "cpu_s": None}
        line(hf_name, tok, f"{hf['samples']} samples", "-")
        line(ax_name, hf, f"{hf['multipack_bins']} bins", f"{hf['multipack_padding']:.2%}")
        # Tokenization alone writes no packed rows: the figure compares packing peers.
        rates.append(hf["real_tokens"] / hf["elapsed_s"])
    lf_name = (
        f"LLaMA-Factory get_dataset (packing, neat_packing, num_proc={NUM_PROC}), save_to_disk"
    )
    if "error" in lf:
        print(f"| {lf_name} | {lf['error']} | | | | |")
    else:
        line(lf_name, lf, str(lf["rows"]), f"{lf['padding']:.2%}")
        rates.append(lf["real_tokens"] / lf["elapsed_s"])
    if "error" not in hf:
        same = hf["real_tokens"] == ours["real_tokens"]
        print(f"| HF datasets.map tokens equal medbase's | {same} | | | | |")
    if not rates:
        return None
    ratio = (ours["real_tokens"] / ours["elapsed_s"]) / max(rates)
    print(
        f"| medbase / best packing peer (Axolotl, LLaMA-Factory), tokens/s | {ratio:.2f}x (goal >= {GOAL_VS_PEER}x) | | | | |"
    )
    return ratio


def build_big_file(root: Path, mb: float, parts: int = 1) -> int:
    """The bundled English conversations repeated to about `mb` MB of ApolloCorpus JSON,
    as one `medicalBook_en_qa.json` or the same rows split into `parts` such files (one
    folder each); returns the number of conversations."""
    convs = [
        json.dumps(c, ensure_ascii=False)
        for name in BIG_FILE_SOURCES
        for c in json.loads((sample_dir() / "apollo" / name).read_text(encoding="utf-8"))
    ]
    size = sum(len(c.encode("utf-8")) + 1 for c in convs)
    rows = convs * max(1, round(mb * 1e6 / size))
    per_part = -(-len(rows) // parts)
    for i in range(parts):
        folder = root / f"part-{i:02d}" if parts > 1 else root
        folder.mkdir(parents=True, exist_ok=True)
        chunk = rows[i * per_part : (i + 1) * per_part]
        with (folder / "medicalBook_en_qa.json").open("w", encoding="utf-8") as f:
            f.write("[")
            for j in range(0, len(chunk), 10_000):  # written in pieces: no whole-file string
                f.write(("," if j else "") + ",".join(chunk[j : j + 10_000]))
            f.write("]")
    return len(rows)


def run_big_file_case(tmp: Path, mb: float, seq_len: int) -> dict:
    """One big file vs ten files of the same rows vs a file a tenth the size."""
    block_mb = max(1, round(mb / 16))
    results = {}
    for name, size, parts in (("tenth", mb / 10, 1), ("ten_files", mb, 10), ("one_file", mb, 1)):
        corpus = tmp / f"big-{name}"
        n = build_big_file(corpus, size, parts)
        results[name] = run_ours(corpus, tmp / "runs", f"big-{name}", seq_len, "best_fit", block_mb)
        results[name]["conversations"] = n
        shutil.rmtree(corpus, ignore_errors=True)
    return results | {"block_mb": block_mb}


def print_big_file_case(big: dict, mb: float) -> tuple[float, float]:
    one, ten, tenth = big["one_file"], big["ten_files"], big["tenth"]
    speed = (one["real_tokens"] / one["elapsed_s"]) / (ten["real_tokens"] / ten["elapsed_s"])
    memory = one["largest_mib"] / tenth["largest_mib"]
    print()
    print(
        f"Single big file: {mb:g} MB ApolloCorpus medicalBook_en_qa.json "
        f"({one['conversations']:,} conversations, {one['real_tokens'] / 1e6:.1f}M tokens), "
        f"blocks of {big['block_mb']} MiB"
    )
    print()
    print("| | one file | ten files, same rows | one file of a tenth |")
    print("| --- | ---: | ---: | ---: |")
    row = [
        f"{r['real_tokens'] / r['elapsed_s']:,.0f} ({r['elapsed_s']:.1f} s)"
        for r in (one, ten, tenth)
    ]
    print(f"| tokens/s (wall) | {' | '.join(row)} |")
    peaks = " | ".join(f"{r['largest_mib']:.0f} MiB" for r in (one, ten, tenth))
    print(f"| largest process, peak | {peaks} |")
    print(f"| one file / ten files, tokens/s | {speed:.2f}x (goal >= {GOAL_BIG_FILE_SPEED}x) | | |")
    print(
        f"| one file / a tenth, peak memory | {memory:.2f}x (goal <= {GOAL_BIG_FILE_MEMORY}x) | | |"
    )
    return speed, memory


def big_file_figures(speed: float, memory: float) -> list[dict]:
    return [
        {
            "name": "prepare_single_big_file_tokens_per_s_vs_ten_files",
            "value": round(speed, 3),
            "goal": GOAL_BIG_FILE_SPEED,
            "higher_is_better": True,
        },
        {
            "name": "prepare_single_big_file_peak_memory_vs_tenth",
            "value": round(memory, 3),
            "goal": GOAL_BIG_FILE_MEMORY,
            "higher_is_better": False,
        },
    ]


def run_ours(
    corpus: Path, root: Path, name: str, seq_len: int, packing: str, task_input_mb: int = 8
) -> dict:
    cfg = load_config(
        preset="tiny",
        overrides=[
            f"run.root={root}",
            f"run.name={name}",
            f"prepare.inputs={json.dumps([str(corpus)])}",
            f"prepare.seq_len={seq_len}",
            f"prepare.packing={packing}",
            f"prepare.task_input_mb={task_input_mb}",
            "clean.enabled=false",  # prepare alone is measured
        ],
    )
    with Meter(with_ray=True) as mem:
        t0 = time.perf_counter()
        summary = run_prepare(cfg)
        elapsed = time.perf_counter() - t0
    t = summary["manifest"]["totals"]
    return {
        "elapsed_s": elapsed,
        "real_tokens": t["real_tokens"],
        "rows": t["rows"],
        "padding": t["padding_fraction"],
        "peak_mib": mem.peak / 2**20,
        "largest_mib": mem.largest / 2**20,
        "cpu_s": mem.cpu_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3M characters, under a minute")
    parser.add_argument("--seq-len", type=int, default=2048, help="headline seq_len")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument(
        "--big-file-mb", type=float, default=None, help="single-big-file case size (400; quick: 4)"
    )
    parser.add_argument("--big-file-only", action="store_true", help="only the big-file case")
    parser.add_argument("--peers", action="store_true", help="run the peers with --quick too")
    args = parser.parse_args()
    load_before = os.getloadavg()  # the machine may be shared: printed with the figures
    big_mb = args.big_file_mb or (4 if args.quick else 400)
    target = 2_000_000 if args.quick else 20_000_000
    repeat = REPEAT // 4 if args.quick else REPEAT

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread per worker
    # Ray starts its workers at nice 15; on a machine shared with other work they would
    # then lose the CPUs to the reference, which runs at nice 0. Same priority for both.
    os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112 (Ray reads this exact name)
    tmp = Path(tempfile.mkdtemp(prefix="medbase-bench-prepare-"))
    try:
        corpus = tmp / "corpus"
        chars, n_files = (
            (0, 0) if args.big_file_only else build_corpus(corpus, target, repeat=repeat)
        )
        init_ray(num_cpus=args.cpus)
        warm = tmp / "warm"
        build_corpus(warm, 1)
        t0 = time.perf_counter()
        run_ours(warm, tmp / "runs", "warm", args.seq_len, "best_fit")
        cold_s = time.perf_counter() - t0
        big = run_big_file_case(tmp, big_mb, args.seq_len)
        if args.big_file_only:
            speed, memory = print_big_file_case(big, big_mb)
            print()
            print(json.dumps(big_file_figures(speed, memory)))
            return

        ours = run_ours(corpus, tmp / "runs", "x1", args.seq_len, "best_fit")
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            ref = pool.submit(
                run_reference, corpus, args.seq_len, tmp / "reference.parquet"
            ).result()
        peers = None
        if not args.quick or args.peers:
            (tmp / "peers").mkdir()
            peers = run_peers(corpus, tmp / "peers", args.seq_len)
        small = None
        if not args.quick:  # padding at the tiny preset's seq_len, both packers
            small = (
                run_ours(corpus, tmp / "runs", "x1-512", 512, "best_fit"),
                run_ours(corpus, tmp / "runs", "x1-512-nf", 512, "next_fit"),
            )
        build_corpus(corpus, 3 * chars, start_part=len(list(corpus.iterdir())), repeat=repeat)
        ours4 = run_ours(corpus, tmp / "runs", "x4", args.seq_len, "best_fit")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    same = ours["real_tokens"] == ref["real_tokens"]
    speedup = (ours["real_tokens"] / ours["elapsed_s"]) / (ref["real_tokens"] / ref["elapsed_s"])
    mem_ratio = ours4["largest_mib"] / ours["largest_mib"]
    print(
        f"corpus: {chars / 1e6:.1f}M characters in {n_files} files (x4: {4 * chars / 1e6:.1f}M), "
        f"{ours['real_tokens'] / 1e6:.2f}M tokens; Ray with {args.cpus} CPUs; "
        f"cold first run (workers starting) {cold_s:.1f}s; same tokens as the reference: {same}"
    )
    print()
    print(
        f"| seq_len {args.seq_len} | medbase prepare (Ray Data, best_fit) | Apollo reference (1 process, next_fit) |"
    )
    print("| --- | ---: | ---: |")
    print(f"| wall time, 1x | {ours['elapsed_s']:.1f} s | {ref['elapsed_s']:.1f} s |")
    print(
        f"| tokens/s, 1x | {ours['real_tokens'] / ours['elapsed_s']:,.0f} | {ref['real_tokens'] / ref['elapsed_s']:,.0f} |"
    )
    print(
        f"| CPU seconds (tokens per CPU-second) | {ours['cpu_s']:.1f} "
        f"({ours['real_tokens'] / ours['cpu_s']:,.0f}) | {ref['cpu_s']:.1f} "
        f"({ref['real_tokens'] / ref['cpu_s']:,.0f}) |"
    )
    print(f"| speed-up | {speedup:.2f}x | 1x |")
    print(f"| rows | {ours['rows']} | {ref['rows']} |")
    print(f"| padding fraction | {ours['padding']:.2%} | {ref['padding']:.2%} |")
    if small:
        print(
            f"| padding fraction at seq_len 512 | {small[0]['padding']:.2%} | {small[1]['padding']:.2%} (next_fit) |"
        )
    print(
        f"| peak memory, 1x: all processes / largest one | {ours['peak_mib']:.0f} / "
        f"{ours['largest_mib']:.0f} MiB | {ref['peak_mib']:.0f} MiB |"
    )
    print(
        f"| peak memory, 4x: all processes / largest one | {ours4['peak_mib']:.0f} / "
        f"{ours4['largest_mib']:.0f} MiB ({ours4['elapsed_s']:.1f} s) | - |"
    )
    vs_peer = print_peers(ours, peers, args.seq_len)
    speed, memory = print_big_file_case(big, big_mb)
    load_after = os.getloadavg()
    print()
    print(
        "load average (1, 5, 15 min): before "
        + ", ".join(f"{x:.1f}" for x in load_before)
        + "; after "
        + ", ".join(f"{x:.1f}" for x in load_after)
        + f" ({os.cpu_count()} CPUs; above that, other work shared the machine)"
    )
    print()
    print(
        json.dumps(
            big_file_figures(speed, memory)
            + [
                {
                    "name": "prepare_tokens_per_s_vs_best_packing_peer",
                    "value": None if vs_peer is None else round(vs_peer, 3),
                    "goal": GOAL_VS_PEER,
                    "higher_is_better": True,
                },
                {
                    "name": "prepare_tokens_per_s_speedup_vs_apollo",
                    "value": round(speedup, 3),
                    "goal": GOAL_SPEEDUP,
                    "higher_is_better": True,
                },
                {
                    "name": "best_fit_padding_fraction",
                    "value": round(ours["padding"], 5),
                    "goal": GOAL_PADDING,
                    "higher_is_better": False,
                },
                {
                    "name": "prepare_peak_memory_4x_over_1x",
                    "value": round(mem_ratio, 3),
                    "goal": GOAL_MEMORY_RATIO,
                    "higher_is_better": False,
                },
            ]
        )
    )


if __name__ == "__main__":
    main()
