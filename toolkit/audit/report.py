"""The audit's result: findings plus a summary, rendered for people and machines.

    report.summary            counts by severity, code and app, what was read, how
    report.findings           the findings sorted by severity, code, installation: a list, or
                              for a big report a lazy sequence (len, iteration, indexing)
    report.render(fmt)        "text" | "json" | "csv" | "html" (one self-contained page)
    report.stream(fmt, write) the same, handed to `write` piece by piece (flat memory)
    report.to_pandas()        a DataFrame (pandas imported only here)
    report.compare(baseline)  new / fixed against an earlier JSON report (CI gates on new)
    report.exit_code(level)   DESIGN.md §4.2: 1 when a (new) finding reaches the fail level
    report.close()            delete a spilled report's file now (else when it is collected)

The JSON report is exactly `{"summary": {...}, "findings": [...]}`, each finding with the
fields of DESIGN.md §4.4 and nothing else. No renderer ever sees a secret: findings hold none.

Up to SPILL_AT findings live in a list; beyond, in a FindingStore on disk (_spill.py) with
the counts in memory, and every renderer streams. Both give the same bytes (a property test
holds them equal).
"""

from __future__ import annotations

import collections.abc
import csv
import datetime as dt
import heapq
import html
import io
import itertools
import json
import operator
import re
import secrets
import shutil
import sqlite3
import tempfile
from array import array
from json.encoder import encode_basestring
from pathlib import Path

from .. import json_files
from ..errors import ExitCode, UsageError
from ..safe_text import csv_cell, escape_text
from . import _spill
from ..codes import CODES, FAIL_LEVELS, SEVERITIES, at_or_above
from .finding import FIELDS, Finding, code_order

FORMATS = ("text", "json", "csv", "html")
USERS_ROW = "(users)"  # the per-app table's row for findings without an app
_MAX_SHOWN = 200  # characters of a database-supplied name shown in text and HTML
# Spreadsheet formula injection (a config key is customer data): such cells get a leading '.
SPILL_AT = 20_000  # findings kept in a list; a bigger report spills to disk
_CHUNK = 512  # findings rendered per piece handed to `write`
_OF_ARGUMENTS = operator.itemgetter(0, 2, 3, 4, 5, 6)  # a record's `Finding.of` arguments (_spill.py)


# ---- where the findings live ------------------------------------------------------------

class _Listed:
    """A small report's findings: a list, and the same reading interface as FindingStore."""

    def __init__(self, findings: list):
        self.findings = findings
        self._groups = None

    def __len__(self) -> int:
        return len(self.findings)

    def __iter__(self):
        return iter(self.findings)

    def records(self):
        return map(_spill.record_of, self.findings, itertools.count())

    def blocks(self):
        yield list(self.records())

    def _by_code(self) -> dict:
        if self._groups is None:
            by_code: dict = {}
            for finding in self.findings:
                by_code.setdefault(finding.code, []).append(finding)
            self._groups = {code: by_code[code] for code in sorted(by_code, key=code_order)}
        return self._groups

    def groups(self) -> list[tuple]:
        return [(code, len(group), group[0].severity) for code, group in self._by_code().items()]

    def group(self, code):
        return iter(self._by_code().get(code, ()))

    def severity_counts(self) -> dict:
        return self._counts(lambda f: f.severity)

    def code_counts(self) -> dict:
        return self._counts(lambda f: f.code)

    def app_counts(self) -> dict:
        return self._counts(lambda f: (f.app_id, f.severity))

    def _counts(self, of) -> dict:
        counts: dict = {}
        for finding in self.findings:
            value = of(finding)
            counts[value] = counts.get(value, 0) + 1
        return counts

    def close(self) -> None:
        pass


class Findings(collections.abc.Sequence):
    """A spilled report's findings: len, iteration (lazy, from disk) and indexing (which
    reads up to the index: iterate rather than index in a loop)."""

    def __init__(self, store):
        self._store = store

    def __len__(self) -> int:
        return len(self._store)

    def __iter__(self):
        return iter(self._store)

    def __getitem__(self, index):
        if isinstance(index, slice):  # one pass over the file, whatever the slice
            wanted = range(len(self))[index]
            if not wanted:
                return []
            forward = wanted if wanted.step > 0 else wanted[::-1]
            found = list(itertools.islice(iter(self._store), forward.start, forward.stop, forward.step))
            return found if wanted.step > 0 else found[::-1]
        position = range(len(self))[index]  # IndexError, negative indexes
        return next(itertools.islice(iter(self._store), position, None))

    def __repr__(self) -> str:
        return f"<{len(self):,} findings, spilled to disk>"


def _backend(findings):
    """A list for up to SPILL_AT findings, else a FindingStore; another report's stays shared."""
    if isinstance(findings, Findings):
        return findings._store
    if isinstance(findings, (_Listed, _spill.FindingStore)):
        return findings
    items = iter(findings)
    head = list(itertools.islice(items, SPILL_AT + 1))
    if len(head) <= SPILL_AT:
        return _Listed(head)
    store = _spill.FindingStore(ordered=False)
    store.add_findings(head)
    del head
    store.add_findings(items)
    return store


def _from_records(records):
    """A backend holding these records' findings in this order."""
    return _backend(map(_spill.finding_of, records))


class Baseline:
    """What changed since an earlier report: findings matched on `Finding.key`."""

    def __init__(self, current, earlier, source: str | None = None):
        current, earlier = list(current), list(earlier)
        earlier_keys = {f.key for f in earlier}
        current_keys = {f.key for f in current}
        self.source = source
        self._new = _Listed([f for f in current if f.key not in earlier_keys])
        self._fixed = _Listed([f for f in earlier if f.key not in current_keys])
        self.unchanged = len(current) - len(self._new)
        self._new_positions = None  # in the compared report, when compare() made it

    @classmethod
    def _of(cls, new, fixed, unchanged: int, source, new_positions) -> "Baseline":
        diff = cls.__new__(cls)
        diff._new, diff._fixed, diff.unchanged, diff.source = new, fixed, unchanged, source
        diff._new_positions = new_positions
        return diff

    @property
    def new(self):
        return _view(self._new)

    @property
    def fixed(self):
        return _view(self._fixed)

    def summary(self) -> dict:
        return {**self._counts(), "new_findings": [f.to_dict() for f in self._new],
                "fixed_findings": [f.to_dict() for f in self._fixed]}

    def _counts(self) -> dict:
        return {"file": self.source, "new": len(self._new), "fixed": len(self._fixed), "unchanged": self.unchanged}


def _view(backend):
    return backend.findings if isinstance(backend, _Listed) else Findings(backend)


class Report:
    def __init__(self, findings=(), meta: dict | None = None, *, baseline: Baseline | None = None):
        self._findings = _backend(findings)
        self.meta = dict(meta or {})
        self.baseline = baseline

    @classmethod
    def _sorted(cls, store, meta) -> "Report":
        """The engine's report from its (ordered) store: a list again when it is small."""
        if len(store) <= SPILL_AT:
            findings = list(store)
            store.close()
            return cls(findings, meta)
        return cls(store, meta)

    # ---- reading -----------------------------------------------------------------------
    @property
    def findings(self):
        """A list, or for a spilled report a lazy `Findings` sequence."""
        return _view(self._findings)

    @property
    def spilled(self) -> bool:
        return not isinstance(self._findings, _Listed)

    def close(self) -> None:
        """Delete a spilled report's file now rather than when the report is collected."""
        for backend in (self._findings, *((self.baseline._new, self.baseline._fixed) if self.baseline else ())):
            if not isinstance(backend, _Listed):
                backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __len__(self) -> int:
        return len(self._findings)

    def __iter__(self):
        return iter(self._findings)

    def __repr__(self) -> str:
        counts = self.by_severity()
        shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return f"<Report {len(self)} findings{': ' + shown if shown else ''}>"

    def by_severity(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for severity, n in self._findings.severity_counts().items():
            counts[severity] = counts.get(severity, 0) + n
        return counts

    def by_code(self) -> dict[str, int]:
        """Every checked code (table order), with 0 for the clean ones."""
        checked = self.meta.get("codes") or list(CODES)
        counts = dict.fromkeys(checked, 0)
        for code, n in self._findings.code_counts().items():
            counts[code] = counts.get(code, 0) + n
        return counts

    def by_app(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for (app, severity), n in self._findings.app_counts().items():
            row = table.setdefault(app or USERS_ROW, dict.fromkeys(SEVERITIES, 0))
            row[severity] += n
        return dict(sorted(table.items(), key=lambda item: (-sum(item[1].values()), item[0])))

    @property
    def summary(self) -> dict:
        summary = self._summary()
        if self.baseline is not None:
            summary["baseline"] = self.baseline.summary()
        return summary

    def _summary(self) -> dict:
        return {
            "findings": len(self),
            "by_severity": self.by_severity(),
            "by_code": self.by_code(),
            "by_app": self.by_app(),
            **self.meta,
        }

    def select(self, *, code=None, severity=None, app_id=None, installation_id=None) -> list[Finding]:
        """Findings matching every criterion given (a value or a collection of values)."""
        def wanted(value, criterion):
            if criterion is None:
                return True
            if isinstance(criterion, (set, frozenset, list, tuple)):
                return value in criterion
            return value == criterion

        return [f for f in self if wanted(f.code, code) and wanted(f.severity, severity)
                and wanted(f.app_id, app_id) and wanted(f.installation_id, installation_id)]

    def of_arguments(self):
        """The findings in report order, in lists of `Finding.of` arguments — (code,
        installation_id, user_id, app_id, field, message) — read from the records, with no
        Finding made: how the audit store saves a report of a million findings."""
        for block in self._findings.blocks():
            yield list(map(_OF_ARGUMENTS, block))

    def findings_of(self, code: str):
        """The findings of one code, lazily (a spilled report reads only that code's blocks)."""
        return self._findings.group(code)

    def _groups(self, part: str = "findings") -> list[tuple]:
        """[(code, count, severity, findings)] as text and HTML list them (`part`: "findings",
        or the baseline's "new" / "fixed"); `findings` iterates lazily."""
        backend = self._findings if part == "findings" else getattr(self.baseline, "_" + part)
        return [(code, n, severity, backend.group(code)) for code, n, severity in backend.groups()]

    # ---- baseline and exit codes -------------------------------------------------------
    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> "Report":
        """An earlier JSON report (for --baseline). UsageError, one line, if it is not one."""
        where = source or "the baseline"
        try:
            data = json_files.parse(text)  # nesting too deep is one line too
        except ValueError as exc:
            raise UsageError(f"{where} is not JSON ({exc})", hint="pass a report written by `toolkit audit --format json`") from None
        if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
            raise UsageError(f"{where} is not an audit report: no \"findings\" list",
                             hint="pass a report written by `toolkit audit --format json`")
        items = data.pop("findings")

        def findings():
            for number, item in enumerate(items, start=1):
                if not isinstance(item, dict) or item.get("code") not in CODES:
                    raise UsageError(f"{where}: finding #{number} has no known audit code",
                                     hint="pass a report written by `toolkit audit --format json`")
                items[number - 1] = None  # each dict goes once its Finding is made
                yield Finding.from_dict(item)

        summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
        return cls(findings(), {k: v for k, v in summary.items() if k in ("database", "codes", "filters", "generated_at")})

    @classmethod
    def load(cls, path) -> "Report":
        path = Path(path)
        try:
            text = json_files.read_text(path)  # bounded: /dev/zero is refused
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the baseline {path}: {getattr(exc, 'strerror', None) or exc}") from None
        return cls.from_json(text, source=str(path))

    def compare(self, baseline: "Report", source: str | None = None) -> "Report":
        """This report with what is new and what was fixed since `baseline`.

        Only codes both runs checked are compared: a finding of a code the baseline did not
        check is not "new", and one this run did not check is not "fixed". A spilled side is
        compared on disk (a SQLite join on the finding key), never held in memory twice."""
        checked = set(self.meta.get("codes") or CODES)
        before = set(baseline.meta.get("codes") or CODES)
        if self.spilled or baseline.spilled:
            diff = _compare_on_disk(self._findings, baseline._findings, checked, before, source)
        else:
            findings = self._findings.findings
            earlier = [f for f in baseline._findings.findings if f.code in checked]
            diff = Baseline([f for f in findings if f.code in before], earlier, source)
            # Findings of codes the baseline never checked are new by definition.
            diff._new = _Listed(diff._new.findings + [f for f in findings if f.code not in before])
            diff.unchanged = len(findings) - len(diff._new)
        return Report(self._findings, self.meta, baseline=diff)

    def exit_code(self, fail_on: str = "error") -> ExitCode:
        """FINDINGS when a finding (a new one, with a baseline) reaches `fail_on`, else OK."""
        if fail_on not in FAIL_LEVELS:
            raise UsageError(f"--fail-on must be one of {', '.join(FAIL_LEVELS)}, got {fail_on!r}")
        counted = self.baseline._new if self.baseline is not None else self._findings
        if any(at_or_above(severity, fail_on) for severity in counted.severity_counts()):
            return ExitCode.FINDINGS
        return ExitCode.OK

    # ---- renderers ---------------------------------------------------------------------
    def render(self, fmt: str = "text") -> str:
        pieces: list[str] = []
        self.stream(fmt, pieces.append)
        return "".join(pieces)

    def stream(self, fmt: str, write) -> None:
        """Render `fmt`, handing it to `write(str)` piece by piece: what `render` returns,
        without ever holding all of it (a spilled report streams from disk)."""
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        for piece in getattr(self, f"_iter_{fmt}")():
            write(piece)

    def to_json(self, indent: int | None = 2) -> str:
        if indent != 2:
            document = {"summary": self.summary, "findings": [f.to_dict() for f in self]}
            return json.dumps(document, indent=indent, ensure_ascii=False) + "\n"
        return "".join(self._iter_json())

    def _iter_json(self):
        """Exactly `json.dumps({"summary": …, "findings": […]}, indent=2, ensure_ascii=False)`:
        the document with placeholders where the finding lists go, each list streamed in."""
        token = secrets.token_hex(16)
        lists = {"findings": (self._findings, 1)}
        summary = self._summary()
        if self.baseline is not None:
            summary["baseline"] = {**self.baseline._counts(), "new_findings": token + "new",
                                   "fixed_findings": token + "fixed"}
            lists.update(new=(self.baseline._new, 3), fixed=(self.baseline._fixed, 3))
        document = json.dumps({"summary": summary, "findings": token + "findings"}, indent=2, ensure_ascii=False)
        for n, piece in enumerate(re.split(f'"{token}(findings|new|fixed)"', document)):
            if n % 2:  # the split's captured group: which list goes here
                backend, depth = lists[piece]
                yield from _json_list(backend.blocks(), depth)
            else:
                yield piece
        yield "\n"

    def to_csv(self) -> str:
        return "".join(self._iter_csv())

    def _iter_csv(self):
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        flags = self._new_flags()
        writer.writerow(FIELDS + (("change",) if flags is not None else ()))
        for n, rec in enumerate(self._findings.records(), start=1):
            row = [csv_cell(value) for value in _spill.fields_of(rec)]
            if flags is not None:
                row.append("new" if next(flags) else "unchanged")
            writer.writerow(row)
            if not n % _CHUNK:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    def _new_flags(self):
        """None without a baseline, else an iterator: for each finding in order, is it new?"""
        if self.baseline is None:
            return None
        positions = self.baseline._new_positions
        if positions is None:  # a Baseline made by hand: match on the key
            changed = {f.key for f in self.baseline._new}
            return (f.key in changed for f in self)
        return _flags(positions)

    def to_text(self) -> str:
        return "".join(self._iter_text())

    def _iter_text(self):
        from ._text import iter_text

        return iter_text(self)

    def to_html(self, *, page: bool = True) -> str:
        return "".join(self._iter_html(page=page))

    def _iter_html(self, *, page: bool = True):
        from ._html import iter_html

        return iter_html(self, page=page)

    def _repr_html_(self) -> str:
        return self.to_html(page=False)

    def to_pandas(self):
        """The findings as a DataFrame (one row per finding, the §4.4 columns)."""
        import pandas as pd

        columns = [[] for _ in FIELDS]  # built column by column: no dict per finding
        appends = [column.append for column in columns]
        for rec in self._findings.records():
            for append, value in zip(appends, _spill.fields_of(rec)):
                append(value)
        frame = pd.DataFrame(dict(zip(FIELDS, columns)), columns=list(FIELDS))
        del columns, appends
        for name in ("installation_id", "user_id"):
            frame[name] = frame[name].astype("Int64")
        frame["code"] = pd.Categorical(frame["code"], categories=list(CODES))
        frame["severity"] = pd.Categorical(frame["severity"], categories=list(SEVERITIES), ordered=False)
        return frame

    def write(self, fmt: str, path) -> None:
        with open(path, "w", encoding="utf-8", newline="") as handle:
            self.stream(fmt, handle.write)


def _flags(positions):
    """True at each of the sorted `positions`, False elsewhere, forever."""
    position = 0
    for wanted in positions:
        while position < wanted:
            yield False
            position += 1
        yield True
        position += 1
    while True:
        yield False


# ---- the JSON findings list, streamed ------------------------------------------------------

_PIECES: dict = {}


def _pieces(code: str, depth: int) -> tuple[str, ...]:
    """One finding of `code` with its own severity and hint, at `depth`, cut where the
    installation, user, app, field and message go: six literal pieces around five values."""
    found = _PIECES.get((code, depth))
    if found is None:
        inner = "  " * (depth + 1)
        entry = CODES[code]
        static = {"code": encode_basestring(code), "severity": encode_basestring(entry.severity),
                  "hint": encode_basestring(entry.hint)}
        pieces, text = [], "  " * depth + "{\n"
        for n, name in enumerate(FIELDS):
            text += f'{inner}"{name}": '
            if name in static:
                text += static[name]
            else:
                pieces.append(text)
                text = ""
            text += ",\n" if n < len(FIELDS) - 1 else "\n" + "  " * depth + "}"
        pieces.append(text)
        found = _PIECES[code, depth] = tuple(pieces)
    return found


def _json_value(value, inner: str) -> str:
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    # Anything else (a hand-made Finding): json's own text, nested at this depth.
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + inner)


def _json_object(rec, depth: int) -> str:
    """One finding as json.dumps(indent=2) writes it `depth` levels deep (any values)."""
    inner = "  " * (depth + 1)
    lines = [f"{inner}{encode_basestring(name)}: {_json_value(value, inner)}"
             for name, value in zip(FIELDS, _spill.fields_of(rec))]
    return "  " * depth + "{\n" + ",\n".join(lines) + "\n" + "  " * depth + "}"


def _json_objects(records, depth: int) -> list[str]:
    """`_json_object` of each record; the common finding (the code's own severity and hint,
    int or null ids, string names) filled into its code's pieces with one f-string, no call
    per value but json's own C function for the strings (an int prints as json writes it)."""
    inner = "  " * (depth + 1)
    enc, default, value, out = encode_basestring, _spill.DEFAULT, _json_value, []
    pieces = {code: _pieces(code, depth) for code in CODES}
    code = None
    for rec in records:
        this, severity, i, u, app, field, message, hint, _ = rec
        if severity is not default or hint is not default:
            out.append(_json_object(rec, depth))
            continue
        if this is not code:  # a block is mostly one code: its pieces bound once
            code = this
            p0, p1, p2, p3, p4, p5 = pieces[code]
        out.append(f"{p0}{i if type(i) is int else value(i, inner)}{p1}{u if type(u) is int else value(u, inner)}"
                   f"{p2}{enc(app) if type(app) is str else value(app, inner)}"
                   f"{p3}{enc(field) if type(field) is str else value(field, inner)}"
                   f"{p4}{enc(message) if type(message) is str else value(message, inner)}{p5}")
    return out


def _json_list(blocks, depth: int):
    """A list of findings (given in blocks of records) as json.dumps(indent=2) writes it
    `depth` levels deep: a piece per block."""
    separator = "[\n"
    for block in blocks:
        if block:
            yield separator + ",\n".join(_json_objects(block, depth + 1))
            separator = ",\n"
    yield "[]" if separator == "[\n" else "\n" + "  " * depth + "]"


# ---- compare, on disk -----------------------------------------------------------------------

def _compare_on_disk(current, earlier, checked, before, source) -> Baseline:
    """Report.compare for big reports: both sides' keys in a SQLite file in a private
    directory, new and fixed found by joins; only their positions come back to memory."""
    directory = tempfile.mkdtemp(prefix="toolkit-compare-")  # mode 0700
    try:
        db = sqlite3.connect(Path(directory) / "keys.sqlite3")
        try:
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.execute("CREATE TABLE cur (pos INTEGER PRIMARY KEY, counted INTEGER NOT NULL, key BLOB NOT NULL)")
            db.execute("CREATE TABLE base (pos INTEGER PRIMARY KEY, key BLOB NOT NULL)")
            db.executemany("INSERT INTO cur VALUES (?, ?, ?)", (
                (n, rec[0] in before, _spill.key_blob(rec)) for n, rec in enumerate(current.records())))
            db.executemany("INSERT INTO base VALUES (?, ?)", (
                (n, _spill.key_blob(rec)) for n, rec in enumerate(earlier.records()) if rec[0] in checked))
            db.execute("CREATE INDEX cur_key ON cur (key, counted)")
            db.execute("CREATE INDEX base_key ON base (key)")

            def positions(sql):
                return array("q", (pos for (pos,) in db.execute(sql)))

            # Findings of codes the baseline never checked are new by definition (listed last).
            new_matched = positions("SELECT pos FROM cur WHERE counted AND NOT EXISTS "
                                    "(SELECT 1 FROM base WHERE base.key = cur.key) ORDER BY pos")
            new_unchecked = positions("SELECT pos FROM cur WHERE NOT counted ORDER BY pos")
            fixed = positions("SELECT pos FROM base WHERE NOT EXISTS "
                              "(SELECT 1 FROM cur WHERE cur.key = base.key AND cur.counted) ORDER BY pos")
        finally:
            db.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    everything_new = array("q", heapq.merge(new_matched, new_unchecked))  # disjoint, both sorted
    new = _from_records(itertools.chain(_pick(current.records(), new_matched),
                                        _pick(current.records(), new_unchecked)))
    gone = _from_records(_pick(earlier.records(), fixed))
    return Baseline._of(new, gone, len(current) - len(new), source, everything_new)


def _pick(records, positions):
    """The records at the sorted `positions`."""
    flags = _flags(positions)
    return (rec for rec, wanted in zip(itertools.islice(records, (positions[-1] + 1) if positions else 0), flags) if wanted)


def generated_at() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def clean(text, limit: int = _MAX_SHOWN) -> str:
    """A database-supplied string made safe for a terminal or a page: control and bidi
    characters escaped, long names cut."""
    if text is None:
        return ""
    text = escape_text(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def escape(text) -> str:
    return html.escape(clean(text), quote=True)
