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

A dry run also lists what it would change, one row per (installation, field): `describe`
turns a planned `Change` into those rows — the one place that says what a change does — and
`ChangeList` keeps them compactly (see its docstring for the memory bound).

`updated_at`: a change says whether it `touches` it. Rotation does not (the app reads the
same values afterwards; bumping it on every row would erase when customers last edited
their settings); repairs that change what the app reads do.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import itertools
import time
from typing import Callable, Iterable, Iterator, NamedTuple, Protocol, Sequence

from ..db.installations import BEFORE_ALL, Change, Row
from ..safe_text import escape_text, safe_name

DEFAULT_BATCH_SIZE = 2000
DEFAULT_MAX_RETRIES = 3
DEFAULT_LIST_LIMIT = 20  # a dry run's rows kept for the text summary (None: all of them)


class Plan(NamedTuple):
    change: Change | None
    tally: tuple = ()  # labels counted once the row's fate is known (e.g. "rotated", "plaintext")


class Planner(Protocol):
    def plan(self, row: Row) -> Plan: ...

    # Optional: for a planner that re-encrypts, the label of the key each re-encrypted value
    # was under, read from a plan's tally, in the order of the change's patch (see `describe`).
    # def sources(self, tally) -> Sequence[str]: ...


# --- what a dry run lists -----------------------------------------------------------------

ENCRYPT_PLAINTEXT = "encrypt plaintext"
REMOVE_FIELD = "remove unknown field"
STATUS_FIELD = None  # the field of a status change: the row's status, not a config key


class ChangeRow(NamedTuple):
    """One thing a change does to one installation: never a value, only names."""

    installation_id: int
    app_id: str
    field: str | None  # a config key; STATUS_FIELD (None) for the status
    action: str

    def as_dict(self) -> dict:
        return {"installation_id": self.installation_id, "app_id": self.app_id,
                "field": self.field, "action": self.action}


def describe(change: Change, sources: Sequence[str] = ()) -> list[tuple[str | None, str]]:
    """What `change` does, as (field, action) pairs: the one derivation of a dry run's rows.

    `sources` are the planner's labels of the keys the first patched values were under
    (`Planner.sources`): those values are re-encrypted; a patched value without one is a
    plaintext being encrypted. Dropped keys are removed, and a status change is its own pair.
    """
    pairs = []
    for n, key in enumerate(change.patch):
        pairs.append((key, f"re-encrypt ({sources[n]} → current)" if n < len(sources) else ENCRYPT_PLAINTEXT))
    pairs += [(key, REMOVE_FIELD) for key in change.drop]
    if change.status is not None:
        pairs.append((STATUS_FIELD, f"status {change.status[0]} → {change.status[1]}"))
    return pairs


class ChangeList:
    """A dry run's rows: the first `limit` of them (None: all), and how many there are in all.

    Memory: the text summary needs only the first rows (kept up to `limit`, the rest only
    counted), so a text dry run of a million rows holds 20. `--json` asks for every row; they
    are kept columnar — ids in an int64 array, each (app, field, action) as an index into a
    table of the distinct triples, usually few (apps × fields × actions; unknown keys add
    theirs) — about 16 bytes a row rather than ~250 as tuples (2M rows: 34 MB), as compact
    when pickled back from a worker process, and written out in pieces (`json_document`),
    never as one list of dicts. A temporary file would bound it further, at the price of a
    file of customer key names on disk; 16 bytes a row did not seem worth that.
    """

    def __init__(self, limit: int | None = DEFAULT_LIST_LIMIT):
        self.limit = limit
        self.total = 0
        self._ids = array.array("q")
        self._kinds = array.array("q")
        self._table: list[tuple] = []  # distinct (app_id, field, action)
        self._index: dict[tuple, int] = {}

    def add(self, row_id: int, app_id: str, pairs: Iterable[tuple[str | None, str]]) -> None:
        for field, action in pairs:
            self._keep(row_id, (app_id, _encodable(field), action))

    def _keep(self, row_id: int, triple: tuple) -> None:
        self.total += 1
        if self.limit is not None and len(self._ids) >= self.limit:
            return
        kind = self._index.get(triple)
        if kind is None:
            kind = self._index[triple] = len(self._table)
            self._table.append(triple)
        self._ids.append(row_id)
        self._kinds.append(kind)

    def merge(self, other: "ChangeList") -> None:
        """Append `other`'s rows (a later id range: the order stays that of the ids)."""
        kept = len(other._ids)
        for row_id, kind in zip(other._ids, other._kinds):
            self._keep(row_id, other._table[kind])
        self.total += other.total - kept

    @property
    def not_listed(self) -> int:
        return self.total - len(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[ChangeRow]:
        table = self._table
        for row_id, kind in zip(self._ids, self._kinds):
            yield ChangeRow(row_id, *table[kind])

    def as_list(self) -> list[dict]:
        return [row.as_dict() for row in self]

    def render(self, verb: str = "would change") -> list[str]:
        """Lines for people: the rows kept, app ids and field names escaped, then the count of the rest."""
        if not self.total:
            return []
        shown = [(str(r.installation_id), escape_text(r.app_id),
                  "(status)" if r.field is STATUS_FIELD else escape_text(r.field), r.action) for r in self]
        header = ("id", "app", "field", "action")
        widths = [max(len(cells[i]) for cells in [header, *shown]) for i in range(3)]
        lines = [f"{verb} ({self.total}):"]
        for cells in [header, *shown]:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[3])
        if self.not_listed:
            lines.append(f"  … and {self.not_listed} more (--limit N shows more, --json lists them all)")
        return lines


_JSON_CHUNK = 10_000  # rows encoded per piece of output


def json_document(summary: dict, changes: ChangeList | None) -> Iterator[bytes]:
    """`summary` as indented JSON with a dry run's `changes` and `changes_not_listed` last —
    byte for byte `orjson.dumps({**summary, **result.changes_dict()}, option=OPT_INDENT_2)` —
    in pieces, so a million rows never stand in memory as a million dicts (about 1 GB)."""
    import orjson

    indent = orjson.OPT_INDENT_2
    head = orjson.dumps(summary, option=indent)
    if changes is None:
        yield head
        return
    yield head[:-2] + b',\n  "changes": ['  # the summary without its closing "\n}"
    rows = iter(changes)
    first = True
    while True:
        piece = [orjson.dumps(row.as_dict(), option=indent).replace(b"\n", b"\n    ")
                 for row in itertools.islice(rows, _JSON_CHUNK)]
        if not piece:
            break
        yield (b"\n    " if first else b",\n    ") + b",\n    ".join(piece)
        first = False
    yield (b"]" if first else b"\n  ]") + b',\n  "changes_not_listed": ' + str(changes.not_listed).encode() + b"\n}"


def _encodable(field):
    """A key as JSON can carry it: a lone surrogate (readable only by the slow decoder) escaped."""
    if field is None or field.isascii():
        return field
    return safe_name(field)


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
    changes: ChangeList | None = None  # a dry run's rows (what each change would do)

    def changes_dict(self) -> dict:
        """A dry run's rows for a JSON summary: `changes` (all that were kept) and how many were not."""
        if self.changes is None:
            return {}
        return {"changes": self.changes.as_list(), "changes_not_listed": self.changes.not_listed}

    def summary_tail(self, *, listing: bool) -> dict:
        """The end every rewrite's JSON summary shares (rotation, repairs): conflicts, batches,
        seconds and, with `listing`, a dry run's rows."""
        return {
            "conflicts": {"retried": self.conflicts, "left": len(self.left), "left_ids": sorted(self.left)},
            "batches": self.batches,
            "seconds": round(self.elapsed, 3),
            **(self.changes_dict() if listing else {}),
        }

    def json_chunks(self, summary: dict):
        """`summary` (built with listing=False) as indented JSON, a dry run's rows streamed after it."""
        return json_document(summary, self.changes)

    def merge(self, other: "RewriteResult") -> None:
        self.rows_scanned += other.rows_scanned
        self.rows_changed += other.rows_changed
        self.tally.update(other.tally)
        self.conflicts += other.conflicts
        self.left += other.left
        self.gone += other.gone
        self.batches += other.batches
        if other.changes is not None:
            if self.changes is None:
                self.changes = ChangeList(other.changes.limit)
            self.changes.merge(other.changes)


# --- the loop ---------------------------------------------------------------------------

def run_rewrite(store, planner: Planner, *, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False,
                max_retries: int = DEFAULT_MAX_RETRIES, id_range: tuple | None = None,
                progress: Callable[[int], None] | None = None,
                after_batch: Callable[[int], None] | None = None,
                list_limit: int | None = DEFAULT_LIST_LIMIT) -> RewriteResult:
    """Scan the table (or `id_range` = (after, upto]) in pages and apply the planner's changes.

    `progress(n)` is called with the number of rows read after each page; `after_batch(k)`
    after the k-th page is committed (tests use it to let the app write in between). A dry
    run lists what it would change in `result.changes`: the first `list_limit` rows (None: all).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.perf_counter()
    result = RewriteResult(dry_run=dry_run, changes=ChangeList(list_limit) if dry_run else None)
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
        if dry_run:
            _list(result.changes, planner, rows, plans)
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


def _list(listing: ChangeList, planner, rows, plans) -> None:
    """Record what each planned change would do (a dry run writes nothing, so every change counts)."""
    sources = getattr(planner, "sources", None)
    for row, (_, plan) in zip(rows, plans):
        change = plan.change
        if change is not None:
            listing.add(row.id, row.app_id, describe(change, sources(plan.tally) if sources is not None else ()))


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
    from ..errors import ToolkitError

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

