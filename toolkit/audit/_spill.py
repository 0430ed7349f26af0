"""Findings spilled to disk in report order, their counts in memory: a million findings in
flat memory.

A finding is stored as a *record*: its fields in FIELDS order plus its arrival number `seq`,
`(code, severity, installation_id, user_id, app_id, field, message, hint, seq)`, where
severity and hint are `DEFAULT` when they are the code's own (nearly always: the record then
carries only ids, names and a message). Records are packed with marshal in blocks of BLOCK,
appended to one file in a private temporary directory (0700, the file 0600), both removed
when the store is closed or garbage-collected.

Records are written in *segments*: runs of one code and one severity, each sorted by the
store's order key — `Finding.sort_key` then `seq` (`ordered`: a stable sort, the engine's
report) or `seq` alone (the order findings were given in). Reading merges the segments:
segments whose key ranges do not overlap are concatenated (the engine's worker chunks cover
disjoint id ranges, so a full audit merges nothing); overlapping ones go through heapq.merge,
holding one block per segment. Each segment keeps its counts (per app), so summaries and
group headers never read the file.

Workers pack their own chunks (`pack`): the parent only appends the blobs they send.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import marshal
import operator
import os
import pickle
import shutil
import tempfile
import weakref

from ..codes import CODES
from .finding import Finding, code_order, sort_key

DEFAULT = ...  # in a record: "the code's own severity / hint"
BLOCK = 1024  # records per packed block (~150 kB): what a reader holds per segment
FLUSH_AT = 16_384  # records buffered before they are sorted into segments and written (~3 MB)
_SEVERITY = {code: entry.severity for code, entry in CODES.items()}
_HINT = {code: entry.hint for code, entry in CODES.items()}


# ---- records ----------------------------------------------------------------------------

def records(raw, seq: int) -> list[tuple]:
    """The records of engine tuples `(code, installation_id, user_id, app_id, field, message)`
    (ids may be COPY's bytes, or None; severity and hint the code's own), numbered from
    `seq`: one list, no call per finding."""
    default = DEFAULT
    return [(code, default, None if i is None else int(i), None if u is None else int(u), app, field, message,
             default, n) for n, (code, i, u, app, field, message) in enumerate(raw, seq)]


def record_of(finding: Finding, seq: int) -> tuple:
    code, severity, hint = finding.code, finding.severity, finding.hint
    if type(code) is str and code in _SEVERITY:
        if type(severity) is str and severity == _SEVERITY[code]:
            severity = DEFAULT
        if type(hint) is str and hint == _HINT[code]:
            hint = DEFAULT
    return (code, severity, finding.installation_id, finding.user_id, finding.app_id,
            finding.field, finding.message, hint, seq)


def fields_of(rec) -> tuple:
    """A record's eight FIELDS values (defaults filled in)."""
    code, severity, installation_id, user_id, app_id, field, message, hint = rec[:8]
    return (code, _SEVERITY[code] if severity is DEFAULT else severity, installation_id, user_id,
            app_id, field, message, _HINT[code] if hint is DEFAULT else hint)


def finding_of(rec) -> Finding:
    return Finding(*fields_of(rec))


def severity_of(rec):
    return _SEVERITY[rec[0]] if rec[1] is DEFAULT else rec[1]


def ordered_key(rec) -> tuple:
    return (*sort_key(rec[0], severity_of(rec), rec[2], rec[3], rec[5]), rec[8])


def arrival_key(rec) -> tuple:
    return (rec[8],)


def key_blob(rec) -> bytes:
    """`Finding.key` as bytes, for joins on disk. marshal version 2 is canonical: no
    back-references, no interning flags (a given value always packs the same)."""
    return marshal.dumps((rec[0], rec[2], rec[3], rec[4], rec[5]), 2)


def _dump(records: list) -> bytes:
    try:
        return b"m" + marshal.dumps(records)
    except ValueError:  # a value marshal cannot pack (a Finding built by hand with odd types)
        return b"p" + pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)


def _load(blob: bytes) -> list:
    return marshal.loads(blob[1:]) if blob[:1] == b"m" else pickle.loads(blob[1:])


def pack(records, ordered: bool, block: int = BLOCK) -> list[tuple]:
    """Records -> segments `(code, severity, count, first_key, last_key, blobs, apps)`, plain
    data a worker process sends its parent in one pickle."""
    key = ordered_key if ordered else arrival_key
    if ordered:
        runs = _ordered_runs(records)
    else:
        groups: dict = {}
        for rec in records:  # one segment per (code, severity), arrival order kept
            groups.setdefault((rec[0], rec[1]), []).append(rec)
        runs = list(groups.values())
    segments = []
    for run in runs:
        apps = collections.Counter(map(_APP_OF, run))
        blobs = [_dump(run[i:i + block]) for i in range(0, len(run), block)]
        segments.append((run[0][0], severity_of(run[0]), len(run), key(run[0]), key(run[-1]), blobs, dict(apps)))
    return segments


_SEVERITY_OF = operator.itemgetter(1)
_APP_OF = operator.itemgetter(4)
_CODE_OF = operator.itemgetter(0)
# ordered_key less its first two parts, for records of the codes' own severities: those parts
# are then a function of the code, so (code, this) sorts each code's records as ordered_key does.
_BY_CODE_THEN_PLACE = operator.itemgetter(0, 2, 3, 5, 8)


def _ordered_runs(records) -> list[list]:
    """The maximal runs of one (code, severity) of `records` sorted by ordered_key.

    The engine's records (every severity the code's own, ids ints, a code's fields all names
    or all None) sort on their plain values, the code runs then put in ordered_key's order:
    the same order without a Python call per record. Anything else — a severity given, a
    None beside an int or a name (ordered_key reads them as 0 and "") — makes comparing
    fail or is seen first, and ordered_key sorts it all."""
    if set(map(_SEVERITY_OF, records)) <= {DEFAULT}:
        try:
            ordered = sorted(records, key=_BY_CODE_THEN_PLACE)
        except TypeError:
            pass
        else:
            runs = [list(run) for _, run in itertools.groupby(ordered, key=_CODE_OF)]
            return sorted(runs, key=lambda run: ordered_key(run[0])[:2])
    runs, run, current = [], [], None
    for rec in sorted(records, key=ordered_key):  # maximal runs of one (code, severity) in sorted order
        this = (rec[0], rec[1])
        if this != current and run:
            runs.append(run)
            run = []
        current = this
        run.append(rec)
    if run:
        runs.append(run)
    return runs


# ---- the store ------------------------------------------------------------------------------

class _Segment:
    __slots__ = ("code", "severity", "count", "first", "last", "blocks", "apps")

    def __init__(self, code, severity, count, first, last, blocks, apps):
        self.code, self.severity, self.count = code, severity, count
        self.first, self.last, self.blocks, self.apps = first, last, blocks, apps


def _remove(fd: int, directory: str) -> None:
    try:
        os.close(fd)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class FindingStore:
    """Findings on disk, read back lazily in report order (see the module docstring).

    `ordered`: sort by `Finding.sort_key` (stable); otherwise keep the order of addition.
    `codes`: when given, findings of other codes are dropped on the way in. `flush_at` and
    `block` size the segments and blocks (small ones make tests merge a lot)."""

    def __init__(self, *, ordered: bool, codes=None, flush_at: int = FLUSH_AT, block: int = BLOCK):
        self.ordered = ordered
        self._flush_at, self._block = flush_at, block
        self._key = ordered_key if ordered else arrival_key
        self._codes = None if codes is None else frozenset(codes)
        self._segments: list[_Segment] = []
        self._buffer: list[tuple] = []
        self._count = 0
        self._size = 0
        self._fd = None
        self._directory = None
        self._finalizer = None
        self.seq = 0  # the next arrival number `add_findings` and `add_raw` hand out

    # ---- the private file --------------------------------------------------------------
    @property
    def directory(self) -> str:
        """The store's private directory (0700), holding its one file (made on first use)."""
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="toolkit-audit-")  # mode 0700
            path = os.path.join(self._directory, "findings.bin")
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
            self._finalizer = weakref.finalize(self, _remove, self._fd, self._directory)
        return self._directory

    def close(self) -> None:
        """Delete the file and its directory (also done when the store is collected)."""
        if self._finalizer is not None:
            self._finalizer()
        self._segments, self._buffer, self._count = [], [], 0

    def _write(self, blob: bytes) -> tuple[int, int]:
        self.directory  # noqa: B018 — opens the file on first use
        offset, view = self._size, memoryview(blob)
        while view:
            written = os.pwrite(self._fd, view, self._size)
            self._size += written
            view = view[written:]
        return offset, len(blob)

    def _read(self, block) -> list:
        offset, length = block
        return _load(os.pread(self._fd, length, offset))

    # ---- adding ------------------------------------------------------------------------
    def add_packed(self, segments) -> None:
        """Segments made by `pack` (in a worker): their blobs are appended as they are."""
        for code, severity, count, first, last, blobs, apps in segments:
            if self._codes is not None and code not in self._codes:
                continue
            blocks = [self._write(blob) for blob in blobs]
            self._segments.append(_Segment(code, severity, count, first, last, blocks, apps))
            self._count += count

    def add_records(self, records) -> None:
        buffer = self._buffer
        for rec in records:
            buffer.append(rec)
            if len(buffer) >= self._flush_at:
                self.flush()
                buffer = self._buffer

    def add_findings(self, findings) -> None:
        self.add_records(record_of(finding, self._next()) for finding in findings)

    def add_raw(self, raw) -> None:
        """Engine tuples `(code, installation_id, user_id, app_id, field, message)`; ids may
        be COPY's bytes."""
        raw = iter(raw)
        while chunk := list(itertools.islice(raw, self._flush_at)):
            self.add_records(records(chunk, self.seq))
            self.seq += len(chunk)

    def _next(self) -> int:
        self.seq += 1
        return self.seq - 1

    def flush(self) -> None:
        if self._buffer:
            buffer, self._buffer = self._buffer, []
            self.add_packed(pack(buffer, self.ordered, self._block))

    # ---- reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        self.flush()
        return self._count

    def records(self):
        """Every record, in report order."""
        return itertools.chain.from_iterable(self.blocks())

    def blocks(self):
        """Every record, in report order, in lists (a block as read, where nothing merges)."""
        self.flush()
        for cluster in self._clusters(self._segments):
            if len(cluster) == 1:
                for block in cluster[0].blocks:
                    yield self._read(block)
            else:
                merged = self._emit(cluster)
                while chunk := list(itertools.islice(merged, self._block)):
                    yield chunk

    def __iter__(self):
        return map(finding_of, self.records())

    def _blocks(self, segment: _Segment):
        for block in segment.blocks:
            yield from self._read(block)

    @staticmethod
    def _clusters(segments):
        """The segments in order of their first keys, in groups whose key ranges overlap."""
        cluster, high = [], None
        for segment in sorted(segments, key=lambda s: s.first):
            if cluster and segment.first > high:  # after all that came before: no merging
                yield cluster
                cluster, high = [], None
            cluster.append(segment)
            high = segment.last if high is None or segment.last > high else high
        if cluster:
            yield cluster

    def _merge(self, segments):
        for cluster in self._clusters(segments):
            yield from self._emit(cluster)

    def _emit(self, cluster):
        if len(cluster) == 1:
            return self._blocks(cluster[0])
        return heapq.merge(*(self._blocks(s) for s in cluster), key=self._key)

    def _by_first(self):
        self.flush()
        return sorted(self._segments, key=lambda s: s.first)

    def groups(self) -> list[tuple]:
        """[(code, count, severity of its first finding)], in the codes table's order (codes
        outside it after, in the order they first appear) — how text and HTML list them."""
        found: dict = {}
        for segment in self._by_first():
            entry = found.setdefault(segment.code, [segment.code, 0, segment.severity])
            entry[1] += segment.count
        return [tuple(entry) for entry in sorted(found.values(), key=lambda e: code_order(e[0]))]

    def group(self, code):
        """The findings of `code`, in report order."""
        self.flush()
        return map(finding_of, self._merge([s for s in self._segments if s.code == code]))

    def severity_counts(self) -> dict:
        """Findings per severity, in the order the severities first appear."""
        counts: dict = {}
        for segment in self._by_first():
            counts[segment.severity] = counts.get(segment.severity, 0) + segment.count
        return counts

    def code_counts(self) -> dict:
        counts: dict = {}
        for segment in self._by_first():
            counts[segment.code] = counts.get(segment.code, 0) + segment.count
        return counts

    def app_counts(self) -> dict:
        """{(app_id, severity): findings} (Report.by_app says which app ids are "no app")."""
        counts: dict = {}
        for segment in self._by_first():
            for app, n in segment.apps.items():
                counts[app, segment.severity] = counts.get((app, segment.severity), 0) + n
        return counts
