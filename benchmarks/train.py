"""Training throughput: `medbase train` (Ray Train + DeepSpeed) against a plain PyTorch loop.

    python benchmarks/train.py            # seq_len 512, 4 + 16 steps per run
    python benchmarks/train.py --quick    # seq_len 256, 2 + 4 steps per run, under a minute
    python benchmarks/train.py --gpu      # on a GPU machine: Qwen2.5-0.5B-shaped model, bf16

CPU (one run, one local Ray of 2 CPUs, the embedded tiny model, bundled conversations
packed with the prepare stage's functions):
- real (non-pad) tokens/s of medbase train, 2 workers x 1 CPU, ZeRO-1, against a plain
  single-process PyTorch loop with 2 threads over the same model, rows and global batch
  (4 rows a step). Goal: >= 0.9x (Ray + DeepSpeed overhead under 10%).
- medbase train on packed rows (best fit) against unpacked rows (one conversation a
  row). Goal: >= 1.5x real tokens/s. (--quick measures this gain with the plain loop,
  sparing a second start of the Ray workers.)
- peak resident memory of the largest worker.
- the trainers a user would pick instead, on the same rows and global batch in the same
  run (benchmarks/peers/train_peers.py): Hugging Face `Trainer` + DeepSpeed ZeRO-1 (what
  LLaMA-Factory and Axolotl run underneath), 2 processes via `torchrun` (gloo), and Ray
  Train's `TorchTrainer` with plain DDP (no DeepSpeed), 2 workers x 1 CPU. Goal: medbase
  >= the best of them (>= 1.0x). --quick leaves them out (the table says so).
The first steps (worker start, first batches) are left out of every rate. The load
average is printed before and after: the machine may be shared.

GPU (--gpu, a separate code path): one worker on one GPU, a randomly initialised
Qwen2.5-0.5B-shaped model in bf16, ZeRO-2, packed rows of 2048 tokens: real tokens/s
and model FLOPs utilisation (6N + 12·L·d·T FLOPs per token against the card's dense
bf16 peak).

Prints a Markdown table, then (last line) one JSON list.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import ray
import torch
from peers.train_peers import run_hf_trainer, run_ray_ddp
from peers.train_peers import versions as peer_versions
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from medbase_ray.config import load_config
from medbase_ray.corpus.readers import read_conversations, sample_dir
from medbase_ray.models.loading import load_tokenizer
from medbase_ray.models.tiny import tiny_model_dir
from medbase_ray.prepare.stream import pack_conversations
from medbase_ray.ray_runtime import init_ray
from medbase_ray.train.run import run_train

# Read when DeepSpeed is imported and when the tokenizers are first used (both later).
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The trainers a user would pick instead (benchmarks/peers/train_peers.py), same rows.
PEERS = {
    "Hugging Face Trainer + DeepSpeed ZeRO-1, torchrun 2 processes x 1 CPU, packed": run_hf_trainer,
    "Ray TorchTrainer, plain DDP (no DeepSpeed), 2 workers x 1 CPU, packed": run_ray_ddp,
}
GLOBAL_ROWS = 4  # rows per optimizer step: 2 workers x micro-batch 2, or 4 in one process
# Dense bf16 peak FLOP/s by card name, for MFU.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}
QWEN25_05B = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-6,
}


def packed_rows(tokenizer, seq_len: int, packing: str, n_rows: int) -> pa.Table:
    """Bundled conversations, tokenized and packed by the prepare stage's own functions
    (in this process: quicker than the Ray pipeline, same rows), repeated to n_rows."""
    conversations, _ = read_conversations(sample_dir() / "apollo")
    table = pack_conversations(tokenizer, [c["turns"] for c in conversations], seq_len, packing)
    while table.num_rows < n_rows:
        table = pa.concat_tables([table, table])
    return table.slice(0, n_rows)


def rate_after_warmup(metrics: list[dict], warmup_steps: int) -> float:
    """Real tokens/s over the reported windows after the first `warmup_steps` steps."""
    later = [m for m in metrics if m["step"] > warmup_steps]
    tokens = sum(m["real_tokens"] for m in later)
    seconds = sum(m["real_tokens"] / m["real_tokens_per_s"] for m in later)
    return tokens / seconds


def run_medbase(
    model: str, rows: pa.Table, steps: int, warmup: int, workdir: Path, extra=()
) -> dict:
    """medbase train: 2 workers x 1 CPU, ZeRO-1, on `rows` (micro-batch 2 a worker)."""
    cfg = load_config(
        preset="tiny",
        overrides=[
            f"model.name_or_path={model}",
            f"train.storage_path={workdir}",
            "train.zero_stage=1",
            "train.num_workers=2",
            "train.micro_batch_size=2",
            f"train.max_steps={steps}",
            f"train.log_steps={warmup}",
            *extra,
        ],
    )
    blocks = [rows.slice(i, 2) for i in range(0, rows.num_rows, 2)]
    out = run_train(cfg, dataset=ray.data.from_arrow(blocks))
    return {
        "tokens_per_s": rate_after_warmup(out["metrics"], warmup),
        "peak_rss_mb": max(m.get("peak_rss_mb", 0.0) for m in out["metrics"]),
        "peak_gpu_mb": max(m.get("peak_gpu_mb", 0.0) for m in out["metrics"]),
    }


def run_plain(model_dir: str, rows: pa.Table, steps: int, warmup: int, threads: int) -> float:
    """The baseline: one process, `threads` threads, AdamW + clipping, no Ray, no DeepSpeed."""
    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    tokens, started = 0, 0.0
    for k in range(steps):
        if k == warmup:
            tokens, started = 0, time.perf_counter()
        batch = rows.slice(k * GLOBAL_ROWS, GLOBAL_ROWS)
        ids, labels, pos = (
            torch.tensor(batch.column(c).to_pylist())
            for c in ("input_ids", "labels", "position_ids")
        )
        loss = model(input_ids=ids, position_ids=pos, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += sum(batch.column("n_real_tokens").to_pylist())
    return tokens / (time.perf_counter() - started)


def cpu_figures(quick: bool) -> list[dict]:
    seq_len, warmup, measured = (256, 2, 4) if quick else (512, 4, 16)
    steps = warmup + measured
    model_dir = str(tiny_model_dir())
    tokenizer = load_tokenizer(model_dir)
    load_start = os.getloadavg()[0]
    packed = packed_rows(tokenizer, seq_len, "best_fit", steps * GLOBAL_ROWS)
    unpacked = packed_rows(tokenizer, seq_len, "none", steps * GLOBAL_ROWS)
    init_ray(num_cpus=2)
    with tempfile.TemporaryDirectory(prefix="medbase-bench-train-") as tmp:
        plain = run_plain(model_dir, packed, steps, warmup, threads=2)
        plain_1 = run_plain(model_dir, packed, steps, warmup, threads=1)
        plain_1_unpacked = run_plain(model_dir, unpacked, steps, warmup, threads=1)
        ray_packed = run_medbase(model_dir, packed, steps, warmup, Path(tmp) / "packed")
        # --quick leaves out the second medbase run (half its time is worker start-up):
        # the packing gain is then the plain loop's, the same rows through the same model.
        ray_unpacked, peers = None, {}
        if not quick:
            ray_unpacked = run_medbase(model_dir, unpacked, steps, warmup, Path(tmp) / "unpacked")
            for i, (name, run_peer) in enumerate(PEERS.items()):
                try:
                    peers[name] = run_peer(model_dir, packed, steps, warmup, Path(tmp) / f"peer{i}")
                except Exception as exc:  # the row says why instead of disappearing
                    peers[name] = {"error": " ".join(f"{type(exc).__name__}: {exc}".split())}

    overhead = ray_packed["tokens_per_s"] / plain
    if ray_unpacked is not None:
        packing = ray_packed["tokens_per_s"] / ray_unpacked["tokens_per_s"]
    else:
        packing = plain_1 / plain_1_unpacked
    load_1m = os.getloadavg()[0]  # other work on the machine skews every figure
    best_peer = max((p["tokens_per_s"] for p in peers.values() if "error" not in p), default=None)
    vs_peer = ray_packed["tokens_per_s"] / best_peer if best_peer else None
    rows = [
        ("plain PyTorch, 1 process x 2 threads, packed (baseline)", plain, None),
        ("plain PyTorch, 1 process x 1 thread, packed", plain_1, None),
        ("plain PyTorch, 1 process x 1 thread, unpacked", plain_1_unpacked, None),
        ("medbase train, 2 workers x 1 CPU, ZeRO-1, packed", ray_packed["tokens_per_s"], ray_packed["peak_rss_mb"]),
    ]  # fmt: skip
    if ray_unpacked is not None:
        rows.append(
            ("medbase train, 2 workers x 1 CPU, ZeRO-1, unpacked", ray_unpacked["tokens_per_s"], ray_unpacked["peak_rss_mb"])
        )  # fmt: skip
    rows += [(n, p["tokens_per_s"], p["peak_rss_mb"]) for n, p in peers.items() if "error" not in p]
    print(
        f"CPU ({os.cpu_count()} cores, load average {load_start:.1f} at the start, {load_1m:.1f} at the end), tiny model,"
    )
    print(f"seq_len {seq_len}, {GLOBAL_ROWS} rows a step, {measured} steps measured")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in peer_versions().items()) + "\n")
    print("| run | real tokens/s | peak RSS / worker (MiB) |")
    print("| --- | ---: | ---: |")
    for name, rate, rss in rows:
        print(f"| {name} | {rate:.0f} | {'-' if rss is None else f'{rss:.0f}'} |")
    for name, p in peers.items():
        if "error" in p:
            print(f"| {name} | {p['error']} | - |")
    if quick:
        print(f"| {'; '.join(PEERS)} (peers) | skipped (--quick) | - |")
    print(f"\nmedbase / plain (2 threads): {overhead:.2f}x (goal >= 0.9)")
    if vs_peer is not None:
        print(
            f"medbase / best peer ({next(n for n, p in peers.items() if p.get('tokens_per_s') == best_peer)}): {vs_peer:.2f}x (goal >= 1.0)"
        )
    which = "medbase train" if ray_unpacked is not None else "plain, 1 thread (--quick)"
    print(f"packed / unpacked ({which}): {packing:.2f}x (goal >= 1.5)\n")
    return [
        {"name": "train_medbase_vs_plain_tokens_per_s_ratio", "value": round(overhead, 3), "goal": 0.9, "higher_is_better": True},
        {"name": "train_medbase_vs_best_peer_tokens_per_s_ratio", "value": None if vs_peer is None else round(vs_peer, 3), "goal": 1.0, "higher_is_better": True},
        {"name": "train_packed_vs_unpacked_tokens_per_s_ratio", "value": round(packing, 3), "goal": 1.5, "higher_is_better": True},
        {"name": "train_real_tokens_per_s_cpu", "value": round(ray_packed["tokens_per_s"], 1), "goal": None, "higher_is_better": True},
        {"name": "train_peak_rss_mb_per_worker", "value": round(ray_packed["peak_rss_mb"], 1), "goal": None, "higher_is_better": False},
    ]  # fmt: skip


# -- GPU: a separate path, for a machine with a CUDA GPU ------------------------------


def gpu_figures(quick: bool) -> list[dict]:
    """Qwen2.5-0.5B shape, random weights, bf16, ZeRO-2, one GPU worker: tokens/s, MFU."""
    seq_len, micro, warmup, measured = (2048, 4, 3, 5) if quick else (2048, 8, 5, 20)
    steps = warmup + measured
    tokenizer = load_tokenizer(str(tiny_model_dir()))
    rows = packed_rows(tokenizer, seq_len, "best_fit", steps * micro)
    name = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory(prefix="medbase-bench-gpu-") as tmp:
        model_dir = Path(tmp) / "qwen2.5-0.5b-shape"
        model = Qwen2ForCausalLM(Qwen2Config(**QWEN25_05B, pad_token_id=tokenizer.pad_token_id))
        n_params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)  # ids < 8192: valid for the larger vocabulary
        del model
        init_ray()
        cfg = load_config(
            preset="qwen2.5-0.5b",
            overrides=[
                f"model.name_or_path={model_dir}",
                f"train.storage_path={Path(tmp) / 'run'}",
                "train.num_workers=1",
                "train.zero_stage=2",
                f"train.micro_batch_size={micro}",
                "train.grad_accum_steps=1",
                f"train.max_steps={steps}",
                f"train.log_steps={warmup}",
                "train.save_steps=null",
                "train.eval_steps=null",
                "train.torch_adam=true",  # torch's AdamW: no DeepSpeed op to compile on the machine
            ],
        )
        blocks = [rows.slice(i, micro) for i in range(0, rows.num_rows, micro)]
        out = run_train(cfg, dataset=ray.data.from_arrow(blocks))
    tokens_per_s = rate_after_warmup(out["metrics"], warmup)
    cfg_m = QWEN25_05B
    flops_per_token = (
        6 * n_params + 12 * cfg_m["num_hidden_layers"] * cfg_m["hidden_size"] * seq_len
    )
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    mfu = tokens_per_s * flops_per_token / peak if peak else None
    gpu_mb = max(m.get("peak_gpu_mb", 0.0) for m in out["metrics"])
    print(
        f"GPU ({name}), Qwen2.5-0.5B shape ({n_params / 1e6:.0f}M parameters), bf16, ZeRO-2, seq_len {seq_len}, micro-batch {micro}\n"
    )
    print("| real tokens/s | MFU | peak GPU memory (MiB) |")
    print("| ---: | ---: | ---: |")
    print(
        f"| {tokens_per_s:.0f} | {mfu:.1%} | {gpu_mb:.0f} |"
        if mfu
        else f"| {tokens_per_s:.0f} | - | {gpu_mb:.0f} |"
    )
    print()
    return [
        {"name": "train_gpu_qwen05b_tokens_per_s", "value": round(tokens_per_s, 1), "goal": None, "higher_is_better": True},
        {"name": "train_gpu_qwen05b_mfu", "value": round(mfu, 4) if mfu else None, "goal": None, "higher_is_better": True},
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, under a minute")
    parser.add_argument("--gpu", action="store_true", help="the GPU figures (needs CUDA)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.gpu:
        os.environ.pop("DS_ACCELERATOR", None)
        figures = gpu_figures(args.quick)
    else:
        figures = cpu_figures(args.quick)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
