"""The batched compare-and-swap rewrite loop that key rotation and repairs share.

A *planner* looks at one installation row and says what to change (a `Change`) and what it
saw (`tally` labels for the summary). This module does the rest, the same way for both:

- reads rows in keyset pages by id (`WHERE id > last ORDER BY id LIMIT n`), each page its
  own short read-only transaction;
- writes each page's changes in ONE statement, in its own short transaction, with a
  compare-and-swap condition per row: the keys the planner read must still hold exactly the
  values it read (`config @> expect`), or — for a change that depends on the whole row,
  like a status fix — the whole config and status must be unchanged. A row the app wrote
  in between simply does not match: nothing of the app's write is overwritten, and a write
  to another key of the same row never blocks the rewrite;
- re-reads the rows that did not match, plans them again and retries (bounded); rows still
  changing after that are left alone and reported, for the next run;
- never holds anything across transactions, so it is safe through a transaction pooler
  (no WITH HOLD cursor, no session SET or advisory lock: `SET LOCAL` only) and can be
  killed at any instant: every committed page is final, every value is at all times
  either the old one or the new one, and running again finishes the job.

The reading, decoding and writing of rows is the stores' (`toolkit.db.installations`).

`updated_at`: a change says whether it `touches` it. Rotation does not (the app reads the
same values afterwards; bumping it on every row would erase when customers last edited
their settings); repairs that change what the app reads do.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Callable, NamedTuple, Protocol

from .db.installations import BEFORE_ALL, Change, Row

DEFAULT_BATCH_SIZE = 2000
DEFAULT_MAX_RETRIES = 3


class Plan(NamedTuple):
    change: Change | None
    tally: tuple = ()  # labels counted once the row's fate is known (e.g. "rotated", "plaintext")


class Planner(Protocol):
    def plan(self, row: Row) -> Plan: ...


@dataclasses.dataclass
class RewriteResult:
    dry_run: bool
    rows_scanned: int = 0
    rows_changed: int = 0  # written (or, in a dry run, that would be)
    tally: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    conflicts: int = 0  # compare-and-swap misses, each re-read and retried
    left: list = dataclasses.field(default_factory=list)  # ids still changing after the retries
    gone: int = 0  # rows deleted between the read and the write
    batches: int = 0
    elapsed: float = 0.0

    def merge(self, other: "RewriteResult") -> None:
        self.rows_scanned += other.rows_scanned
        self.rows_changed += other.rows_changed
        self.tally.update(other.tally)
        self.conflicts += other.conflicts
        self.left += other.left
        self.gone += other.gone
        self.batches += other.batches


# --- the loop ---------------------------------------------------------------------------

def run_rewrite(store, planner: Planner, *, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False,
                max_retries: int = DEFAULT_MAX_RETRIES, id_range: tuple | None = None,
                progress: Callable[[int], None] | None = None,
                after_batch: Callable[[int], None] | None = None) -> RewriteResult:
    """Scan the table (or `id_range` = (after, upto]) in pages and apply the planner's changes.

    `progress(n)` is called with the number of rows read after each page; `after_batch(k)`
    after the k-th page is committed (tests use it to let the app write in between).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.perf_counter()
    result = RewriteResult(dry_run=dry_run)
    after, upto = id_range if id_range is not None else (BEFORE_ALL, None)
    while True:
        rows = store.read_page(after, batch_size, upto)
        if not rows:
            break
        after = rows[-1].id
        result.rows_scanned += len(rows)
        _settle(store, planner, rows, result, dry_run=dry_run, max_retries=max_retries)
        result.batches += 1
        if progress is not None:
            progress(len(rows))
        if after_batch is not None:
            after_batch(result.batches)
        if len(rows) < batch_size:
            break
    result.elapsed = time.perf_counter() - started
    return result


def _settle(store, planner, rows, result, *, dry_run, max_retries) -> None:
    """Plan `rows`, write the changes, and retry the rows the app changed meanwhile."""
    attempt = 0
    while rows:
        plans = [(row.id, planner.plan(row)) for row in rows]
        changes = [plan.change for _, plan in plans if plan.change is not None]
        if dry_run or not changes:
            applied = {change.id for change in changes}
        else:
            applied = store.apply(changes, {row.id: row.version for row in rows})
        missed = []
        settled = []  # the tallies of the rows settled now (counted once per page: cheaper)
        for row_id, plan in plans:
            if plan.change is None or row_id in applied:
                settled += plan.tally
            else:
                missed.append(row_id)
        result.tally.update(settled)
        result.rows_changed += len(changes) - len(missed)
        if not missed:
            return
        result.conflicts += len(missed)
        attempt += 1
        if attempt > max_retries:
            result.left += missed
            return
        rows = store.read_ids(missed)
        result.gone += len(missed) - len(rows)


# --- in parallel ------------------------------------------------------------------------

def run_parallel(store_factory: Callable[[], object], planner: Planner, *, workers: int,
                 id_bounds: tuple[int, int], progress: Callable[[int], None] | None = None,
                 **options) -> RewriteResult:
    """`run_rewrite` in `workers` processes over disjoint id ranges, each with its own store.

    Python's decrypt/encrypt is the bottleneck of a rotation, so two processes nearly halve
    it. The last range is open-ended: rows inserted meanwhile are still visited. A worker
    dies with its parent (Linux), so killing the command stops everything, as one process would.
    """
    import concurrent.futures
    import multiprocessing

    low, high = id_bounds
    ranges = id_ranges(low - 1, high, workers)
    ranges[-1] = (ranges[-1][0], None)
    context = multiprocessing.get_context(_start_method())
    queue = context.Queue()
    started = time.perf_counter()
    result = RewriteResult(dry_run=options.get("dry_run", False))
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=len(ranges), mp_context=context, initializer=_init_worker, initargs=(queue,)
    ) as pool:
        futures = [pool.submit(_worker, store_factory, planner, id_range, options) for id_range in ranges]
        pending = set(futures)
        delivered = 0
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=0.2)
            delivered += _drain(queue, progress)
        outcomes = [future.result() for future in futures]
        # A worker's last counts may still sit in its queue's feeder thread when its task
        # returns: wait (bounded) until every row it read has been reported.
        expected = sum(o.rows_scanned for o in outcomes if not isinstance(o, _WorkerError))
        delivered += _drain(queue, progress, until=expected - delivered)
    for outcome in outcomes:
        if isinstance(outcome, _WorkerError):
            raise outcome.rebuild()
        result.merge(outcome)
    result.elapsed = time.perf_counter() - started
    return result


def _start_method() -> str:
    """fork when this is the only thread (cheap); forkserver otherwise (a Jupyter kernel or the
    dashboard run threads, and forking a threaded process can deadlock the child)."""
    import multiprocessing
    import threading

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


_progress_queue = None


def _init_worker(queue) -> None:
    global _progress_queue
    _progress_queue = queue
    try:  # Linux: die with the parent (a killed command must not leave writers behind)
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _WorkerError(NamedTuple):
    cls: type
    message: str
    hint: str | None

    def rebuild(self):
        return self.cls(self.message, hint=self.hint)


def _worker(store_factory, planner, id_range, options):
    from .errors import ToolkitError

    queue = _progress_queue
    try:
        with store_factory() as store:
            return run_rewrite(store, planner, id_range=id_range,
                               progress=(lambda n: queue.put(n)) if queue is not None else None, **options)
    except ToolkitError as exc:  # keep the hint across the process boundary
        return _WorkerError(type(exc), exc.message, exc.hint)


def _drain(queue, progress, *, until: int = 0) -> int:
    """Report what the workers have queued; with `until`, wait up to 5 s for that many rows."""
    import queue as queue_module

    total = 0
    while True:
        try:
            count = queue.get(timeout=5) if total < until else queue.get_nowait()
        except queue_module.Empty:
            return total
        total += count
        if progress is not None:
            progress(count)


def id_ranges(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """Split ids (low..high] into `parts` disjoint (after, upto] ranges for parallel workers."""
    parts = max(1, parts)
    span = max(0, high - low)
    step = -(-span // parts) or 1
    ranges = []
    start = low
    while start < high:
        ranges.append((start, min(high, start + step)))
        start += step
    return ranges or [(low, high)]

