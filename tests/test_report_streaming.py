"""Spilled (on disk, streamed) and in-memory reports are the same report: same findings in the
same order, same bytes in every format, same baseline diff. And a million findings iterate
in flat memory, through the notebook helpers too."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import stat
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_planted import REGISTRY_PATH, keyring, plant
from toolkit import db
from toolkit.audit import ALL_CODES, CODES, FIELDS, FORMATS, SEVERITIES, Finding, Report, report as report_module, run_audit
from toolkit.audit._spill import FindingStore, _load, ordered_key, pack, records
from toolkit.safe_text import csv_cell
from toolkit.nb._audit import AuditResult
from toolkit.registry import load_registry

# Customer-supplied names: markup, terminal escapes, bidi overrides, quotes, formula starts.
names = st.one_of(st.none(), st.sampled_from(["stripe", "slack", "", "=cmd", "<b>x</b>", "\x1b[2J", "a\u202eb"]),
                  st.text(max_size=8))
ids = st.one_of(st.none(), st.integers(min_value=0, max_value=40))


@st.composite
def findings(draw):
    code = draw(st.sampled_from(ALL_CODES))
    entry = CODES[code]
    severity = draw(st.one_of(st.just(entry.severity), st.sampled_from(SEVERITIES)))  # mostly the code's own
    hint = draw(st.one_of(st.just(entry.hint), st.text(max_size=5)))
    return Finding(code, severity, draw(ids), draw(ids), draw(names), draw(names), draw(st.text(max_size=12)), hint)


finding_lists = st.lists(findings(), max_size=60)
codes_checked = st.one_of(st.none(), st.lists(st.sampled_from(ALL_CODES), min_size=1, unique=True))
store_shapes = st.tuples(st.integers(1, 9), st.integers(1, 4))  # (flush_at, block): many segments


def spilled(items, meta, shape, *, ordered=False) -> Report:
    flush_at, block = shape
    store = FindingStore(ordered=ordered, flush_at=flush_at, block=block)
    store.add_findings(items)
    report = Report(store, meta)
    assert report.spilled
    return report


def old_json(report: Report) -> str:
    """What Report.to_json wrote before streaming: one json.dumps of the whole document."""
    return json.dumps({"summary": report.summary, "findings": [f.to_dict() for f in report.findings]},
                      indent=2, ensure_ascii=False) + "\n"


def old_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    changed = {f.key for f in report.baseline.new} if report.baseline is not None else None
    writer.writerow(FIELDS + (("change",) if changed is not None else ()))
    for finding in report.findings:
        row = [csv_cell(getattr(finding, name)) for name in FIELDS]
        if changed is not None:
            row.append("new" if finding.key in changed else "unchanged")
        writer.writerow(row)
    return out.getvalue()


def assert_same(on_disk: Report, in_memory: Report) -> None:
    assert list(on_disk.findings) == list(in_memory.findings)
    assert len(on_disk) == len(in_memory)
    assert on_disk.summary == in_memory.summary
    if len(in_memory):
        assert on_disk.findings[-1] == in_memory.findings[-1]
        assert on_disk.findings[len(in_memory) // 2] == in_memory.findings[len(in_memory) // 2]
    for fmt in FORMATS:
        assert on_disk.render(fmt) == in_memory.render(fmt), fmt
    assert in_memory.render("json") == old_json(in_memory)
    assert in_memory.render("csv") == old_csv(in_memory)
    for level in ("error", "warning", "info", "never"):
        assert on_disk.exit_code(level) == in_memory.exit_code(level)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=finding_lists, codes=codes_checked, shape=store_shapes)
def test_spilled_and_in_memory_reports_agree_in_order_and_every_format(items, codes, shape):
    meta = {"database": "db", "installations": 7, **({"codes": codes} if codes else {})}
    in_memory = Report(items, meta)
    assert not in_memory.spilled and list(in_memory.findings) == items  # given order kept
    assert_same(spilled(items, meta, shape), in_memory)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=finding_lists, shape=store_shapes)
def test_an_ordered_store_sorts_exactly_as_finding_sort_key(items, shape):
    """The engine's store: Finding.sort_key, stable (equal keys keep their arrival order)."""
    expected = sorted(items, key=lambda f: f.sort_key)
    assert_same(spilled(items, {}, shape, ordered=True), Report(expected, {}))


# What workers hand the packer: mostly int ids (COPY's bytes), a code's field a name or None.
engine_ids = st.one_of(st.integers(0, 30), st.integers(0, 30).map(lambda n: str(n).encode()), st.none())
engine_tuples = st.lists(st.tuples(st.sampled_from(ALL_CODES), engine_ids, engine_ids, names,
                                   st.sampled_from(["apiKey", "region", "", None]), st.text(max_size=6)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(raw=engine_tuples, seq=st.integers(0, 2 ** 40))
def test_the_engine_records_pack_in_ordered_key_order_in_maximal_runs(raw, seq):
    """A worker's pack (its fast path where plain values sort, ordered_key's sort elsewhere)."""
    recs = records(raw, seq)
    segments = pack(recs, True, block=7)
    assert [rec for segment in segments for blob in segment[5] for rec in _load(blob)] == sorted(recs, key=ordered_key)
    assert all(a[:2] != b[:2] for a, b in zip(segments, segments[1:]))  # runs of one (code, severity)
    assert sum(segment[2] for segment in segments) == len(recs)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(now=finding_lists, before=finding_lists, now_codes=codes_checked, before_codes=codes_checked,
       shape=store_shapes, which=st.sampled_from(["both", "current", "baseline"]))
def test_compare_on_disk_agrees_with_compare_in_memory(now, before, now_codes, before_codes, shape, which):
    # Some findings unchanged between the runs, so there is something to match on the key.
    before = before + now[: len(now) // 2]
    now_meta = {"codes": now_codes} if now_codes else {}
    before_meta = {"codes": before_codes} if before_codes else {}
    expected = Report(now, now_meta).compare(Report(before, before_meta), source="base.json")
    current = spilled(now, now_meta, shape) if which != "baseline" else Report(now, now_meta)
    earlier = spilled(before, before_meta, shape) if which != "current" else Report(before, before_meta)
    got = current.compare(earlier, source="base.json")
    assert list(got.baseline.new) == list(expected.baseline.new)
    assert list(got.baseline.fixed) == list(expected.baseline.fixed)
    assert got.baseline.unchanged == expected.baseline.unchanged
    assert_same(got, expected)


def test_the_spill_file_is_private_and_removed_on_close_and_collection():
    items = [Finding.of("field.unknown", n, n, "stripe", "k", "m") for n in range(10)]
    store = FindingStore(ordered=True)
    store.add_findings(items)
    assert len(store) == 10  # flushed to disk
    directory = store.directory
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    (name,) = os.listdir(directory)
    assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o600
    report = Report(store)
    report.close()
    assert not os.path.exists(directory)

    store = FindingStore(ordered=False)
    store.add_findings(items)
    len(store)
    directory = store.directory
    report = Report(store)
    del report, store
    gc.collect()
    assert not os.path.exists(directory)


def test_a_big_report_spills_by_itself_and_reads_back_in_order():
    count = report_module.SPILL_AT + 5
    items = (Finding.of("secret.plaintext", n, n // 3, "stripe", "apiKey", "stored in plaintext") for n in range(count))
    report = Report(items)
    assert report.spilled and len(report) == count
    assert report.findings[-1].installation_id == count - 1
    assert [f.installation_id for f in report.findings[:3]] == [0, 1, 2]
    assert sum(1 for _ in report) == count
    report.close()


# ---- the engine: the spilled path gives the very report the in-memory path gives --------------

@pytest.fixture(scope="module")
def registry():
    return load_registry(REGISTRY_PATH)


def _renders(report) -> dict:
    rendered = {fmt: report.render(fmt) for fmt in FORMATS}
    # Timings and the clock are not findings.
    for fmt in FORMATS:
        rendered[fmt] = rendered[fmt].replace(report.meta["generated_at"], "T")
    rendered["json"] = json.loads(rendered["json"])
    rendered["json"]["summary"].pop("duration_s")
    return rendered


def _both_ways(database, registry, monkeypatch, **kwargs):
    small = run_audit(database, registry, keyring(), **kwargs)
    monkeypatch.setattr(report_module, "SPILL_AT", 0)  # every report spills
    big = run_audit(database, registry, keyring(), **kwargs)
    assert big.spilled and not small.spilled
    return small, big


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("through", ["direct", "pgbouncer"])
def test_the_engine_spills_the_same_report_on_postgres(pg_url, pgbouncer_url, registry, jobs, through, monkeypatch):
    from toolkit.audit import engine

    seeding = db.open_postgres(pg_url)
    try:
        plant(seeding)
    finally:
        seeding.close()
    database = db.open_postgres(pgbouncer_url(pg_url) if through == "pgbouncer" else pg_url)
    try:
        monkeypatch.setattr(engine, "PARALLEL_THRESHOLD", 0)  # worker processes even for a small table
        small, big = _both_ways(database, registry, monkeypatch, jobs=jobs)
    finally:
        database.close()
    assert list(big.findings) == list(small.findings)
    assert _renders(big) == _renders(small)
    baseline = Report.from_json(small.render("json"))
    assert len(big.compare(baseline).baseline.new) == 0


def test_the_engine_spills_the_same_report_on_sqlite(tmp_path, registry, monkeypatch):
    database = db.open_sqlite(tmp_path / "audit.sqlite")
    try:
        db.create_tables(database)
        plant(database)
        small, big = _both_ways(database, registry, monkeypatch)
    finally:
        database.close()
    assert list(big.findings) == list(small.findings)
    assert _renders(big) == _renders(small)


# ---- a million findings in the notebook helpers ----------------------------------------------

MILLION = 1_000_000


def _million():
    apps = ("stripe", "slack", "mailer")
    for n in range(MILLION):
        yield Finding.of("secret.plaintext", n + 1, n // 3 + 1, apps[n % 3], "apiKey",
                         "stored in plaintext, not as iv:authTag:ciphertext")


def test_notebook_helpers_iterate_a_million_findings_in_flat_memory():
    result = AuditResult(_million(), {"installations": MILLION, "codes": list(ALL_CODES)})
    assert result._report.spilled
    tracemalloc.start()
    try:
        assert len(result) == MILLION
        assert sum(1 for f in result if f.app_id == "slack") == MILLION // 3
        stripe = result.where(app="stripe")
        assert len(stripe) == (MILLION + 2) // 3
        assert stripe.by_code["secret.plaintext"] == len(stripe)
        assert result.codes().rows == (("secret.plaintext", "error", MILLION, CODES["secret.plaintext"].hint),)
        assert [row[0] for row in result.apps().rows] == ["stripe", "mailer", "slack"]
        assert "… 999980 more rows" in repr(result)
        assert result[MILLION // 2].installation_id == MILLION // 2 + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A million Finding objects alone would take > 150 MB. What stays: a block per segment read,
    # the buffer `.where()` packs, and the headline's distinct-installation count (8 bytes an id).
    assert peak < 24 * 2**20, f"peak traced memory {peak / 2**20:.1f} MB"
    frame = stripe.to_pandas()  # the explicit ask still builds everything
    assert len(frame) == len(stripe) and str(frame["installation_id"].dtype) == "Int64"
