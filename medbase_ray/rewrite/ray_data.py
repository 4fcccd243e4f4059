"""The Ray layer of the rewrite stage: items -> Ray Data -> a pool of teacher actors.

Each actor runs one asyncio loop with one `openai.AsyncOpenAI` client and a semaphore
of max_in_flight / num_actors slots, and works on several blocks at a time, so the
requests in flight stay near the limit across block boundaries. (Measured for issue 7:
`ray.data.llm`'s HttpRequestProcessor sent one request at a time per worker.) Results
stream back to the driver, which hands them to the store (atomic shards) and shows a
progress bar fed by the actors' live counts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pyarrow as pa
import ray
from tqdm import tqdm

from medbase_ray.rewrite.prompts import load_prompts
from medbase_ray.rewrite.tasks import ITEM_SCHEMA, RESULT_SCHEMA, Checks, process_items
from medbase_ray.rewrite.teacher import Teacher, TeacherSettings

# Blocks an actor works on at once: enough that a block's slow tail overlaps the next.
BLOCKS_PER_ACTOR = 3
REPORT_EVERY_S = 0.25


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Live counts from every actor: {actor: (items finished, in flight, done, rejected)}."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, int, int, int]] = {}

    def report(self, actor: str, counts: tuple[int, int, int, int]) -> None:
        self.counts[actor] = counts

    def totals(self) -> tuple[int, ...]:
        return tuple(sum(c[i] for c in self.counts.values()) for i in range(4))


class TeacherActor:
    """A Ray Data UDF: one block of items in, one block of result rows out."""

    def __init__(self, settings: TeacherSettings, prompts_file: str | None, checks: Checks, board):
        self.settings, self.checks, self.board = settings, checks, board
        self.prompts = load_prompts(prompts_file)
        self.teacher: Teacher | None = None
        self.finished = self.done = self.rejected = 0
        self.key = f"{ray.get_runtime_context().get_actor_id()}"

    async def _report_forever(self) -> None:
        while True:
            self._report()
            await asyncio.sleep(REPORT_EVERY_S)

    def _report(self) -> None:
        in_flight = self.teacher.in_flight if self.teacher else 0
        self.board.report.remote(self.key, (self.finished, in_flight, self.done, self.rejected))

    def _count(self, results: list[dict[str, Any]]) -> None:
        self.finished += 1
        rejected = sum(r["reason"] is not None for r in results)
        self.rejected += rejected
        self.done += len(results) - rejected

    async def __call__(self, batch: pa.Table) -> pa.Table:
        if self.teacher is None:  # built on the loop that Ray Data runs async UDFs on
            self.teacher = Teacher(self.settings)
            self._reporter = asyncio.get_running_loop().create_task(self._report_forever())
        results = await process_items(
            batch.to_pylist(), self.teacher, self.prompts, self.checks, on_results=self._count
        )
        self._report()
        return pa.Table.from_pylist(results, schema=RESULT_SCHEMA)


def run_items_on_ray(
    items: list[dict[str, Any]],
    settings: TeacherSettings,
    prompts_file: str | None,
    checks: Checks,
    num_actors: int,
    actor_num_cpus: float,
    rows_per_block: int | None,
    on_results: Callable[[list[dict[str, Any]]], None],
) -> None:
    """Process `items` on a Ray Data actor pool; hand each finished block to `on_results`."""
    num_actors = max(1, min(num_actors, settings.max_in_flight, len(items)))
    # The run's limits are split evenly: each actor gets its share of slots and rate.
    per_actor = replace(
        settings,
        max_in_flight=settings.max_in_flight // num_actors,
        qps=None if settings.qps is None else settings.qps / num_actors,
    )
    rows = rows_per_block or per_actor.max_in_flight
    table = pa.Table.from_pylist(items, schema=ITEM_SCHEMA)
    blocks = [table.slice(i, rows) for i in range(0, table.num_rows, rows)]
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.print_on_execution_start
    # ours below says more (done / rejected / in flight); restored afterwards
    ctx.enable_progress_bars = ctx.print_on_execution_start = False
    board = ProgressBoard.remote()
    bar = tqdm(total=len(items), desc="rewrite", unit="item", dynamic_ncols=True)
    stop = threading.Event()

    def refresh() -> None:  # live counts from the actors, between finished blocks
        while not stop.wait(0.5):
            finished, in_flight, done, rejected = ray.get(board.totals.remote())
            bar.n = finished
            bar.set_postfix(done=done, rejected=rejected, in_flight=in_flight, refresh=True)

    poller = threading.Thread(target=refresh, daemon=True)
    poller.start()
    done = rejected = 0
    try:
        ds = ray.data.from_arrow(blocks).map_batches(
            TeacherActor,
            batch_size=None,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(
                size=num_actors,
                max_tasks_in_flight_per_actor=BLOCKS_PER_ACTOR,
                max_concurrent_calls_per_actor=BLOCKS_PER_ACTOR,
            ),
            num_cpus=actor_num_cpus,
            fn_constructor_kwargs={
                "settings": per_actor,
                "prompts_file": prompts_file,
                "checks": checks,
                "board": board,
            },
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            results = batch.to_pylist()
            n_rejected = sum(r["reason"] is not None for r in results)
            done, rejected = done + len(results) - n_rejected, rejected + n_rejected
            on_results(results)
        bar.n = len(items)
    finally:
        stop.set()
        poller.join()
        bar.set_postfix(done=done, rejected=rejected, in_flight=0)
        bar.close()
        ray.kill(board)
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved
