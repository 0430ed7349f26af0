"""Report formats (JSON schema, CSV columns, HTML escaping, text groups), baseline diffs and
exit codes — on hand-made findings, so each assertion names the behaviour it pins."""

from __future__ import annotations

import csv
import io
import json

import pytest

from toolkit.audit import FIELDS, Finding, Report
from toolkit.codes import ALL_CODES
from toolkit.errors import ExitCode, UsageError

NASTY_APP = '<script>alert("x")</script>'
NASTY_FIELD = "=HYPERLINK(\"http://evil\")\x1b[31m\u202e"


def sample() -> Report:
    return Report([
        Finding.of("secret.plaintext", 1, 10, "stripe", "apiKey", "stored in plaintext, not as iv:authTag:ciphertext"),
        Finding.of("field.unknown", 2, 11, NASTY_APP, NASTY_FIELD, "not a field of app 'x'"),
        Finding.of("status.not-configured", 3, 12, "stripe", None, "status is installed, but every required field is set and valid"),
        Finding.of("user.email-case-duplicate", None, 13, None, None, "email equals, ignoring case, that of user 14"),
        Finding.of("user.email-case-duplicate", None, 14, None, None, "email equals, ignoring case, that of user 13"),
    ], {"database": "postgresql://u@h:5432/db", "installations": 3, "codes": list(ALL_CODES)})


def test_json_is_summary_and_findings_with_exactly_the_design_fields():
    document = json.loads(sample().render("json"))
    assert set(document) == {"summary", "findings"}
    assert all(list(f) == list(FIELDS) for f in document["findings"])
    assert list(FIELDS) == ["code", "severity", "installation_id", "user_id", "app_id", "field", "message", "hint"]
    summary = document["summary"]
    assert summary["findings"] == 5
    assert summary["by_severity"] == {"error": 1, "warning": 3, "info": 1}
    assert summary["by_code"]["user.email-case-duplicate"] == 2 and summary["by_code"]["app.unknown"] == 0
    assert summary["by_app"]["(users)"] == {"error": 0, "warning": 2, "info": 0}
    assert summary["installations"] == 3
    assert document["findings"][0]["hint"].startswith("Encrypt it")


def test_csv_one_row_per_finding_and_no_formulas():
    rows = list(csv.reader(io.StringIO(sample().render("csv"))))
    assert rows[0] == list(FIELDS)
    assert len(rows) == 1 + 5
    unknown = dict(zip(rows[0], rows[2]))
    assert unknown["field"].startswith("'=HYPERLINK")  # a spreadsheet must not run it
    assert unknown["installation_id"] == "2" and rows[4][2] == ""  # user findings: no installation


def test_html_is_one_self_contained_escaped_page():
    page = sample().render("html")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "src=" not in page and "<link" not in page  # nothing fetched from elsewhere
    assert "\x1b" not in page and "\u202e" not in page
    assert 'href="#secret.plaintext"' in page


def test_text_summary_tables_then_groups_with_hints():
    text = sample().render("text")
    assert text.startswith("Audit of postgresql://u@h:5432/db: 3 installations, 5 findings (1 error, 3 warnings, 1 info)")
    assert "code " in text and "app " in text
    group = text.index("secret.plaintext (error) — 1 finding")
    assert text.index("hint: Encrypt it", group) > group
    assert "user.email-case-duplicate (warning) — 2 findings" in text
    assert "  user 13: email equals" in text
    # terminal escapes and bidi overrides from a config key are shown, not obeyed
    assert "\x1b" not in text and "\u202e" not in text and "\\x1b[31m" in text


def test_empty_report():
    report = Report([], {"installations": 0, "codes": list(ALL_CODES)})
    assert "No findings." in report.render("text")
    assert json.loads(report.render("json"))["findings"] == []
    assert report.render("csv") == ",".join(FIELDS) + "\n"
    assert report.exit_code("info") == ExitCode.OK


@pytest.mark.parametrize("level, code", [
    ("error", ExitCode.FINDINGS), ("warning", ExitCode.FINDINGS), ("info", ExitCode.FINDINGS), ("never", ExitCode.OK)])
def test_exit_codes(level, code):
    assert sample().exit_code(level) == code


def test_exit_code_only_counts_what_reaches_the_level():
    report = Report([Finding.of("field.unknown", 1, 1, "a", "k", "m")])
    assert report.exit_code("error") == ExitCode.OK
    assert report.exit_code("warning") == ExitCode.FINDINGS
    with pytest.raises(UsageError):
        report.exit_code("fatal")


def test_baseline_new_and_fixed():
    earlier = Report.from_json(sample().render("json"), source="base.json")
    fixed = earlier.findings[0]
    now = Report(
        [f for f in earlier.findings if f is not fixed]
        + [Finding.of("secret.stale-key", 9, 19, "slack", "botToken", "decrypts only with the previous key")],
        {"codes": list(ALL_CODES)},
    ).compare(earlier, source="base.json")
    assert [f.code for f in now.baseline.new] == ["secret.stale-key"]
    assert now.baseline.fixed == [fixed]
    assert now.baseline.unchanged == 4
    # only new findings count: the stale key is a warning
    assert now.exit_code("error") == ExitCode.OK
    assert now.exit_code("warning") == ExitCode.FINDINGS
    summary = json.loads(now.render("json"))["summary"]["baseline"]
    assert (summary["new"], summary["fixed"], summary["unchanged"]) == (1, 1, 4)
    assert summary["fixed_findings"][0]["code"] == "secret.plaintext"
    text = now.render("text")
    assert "1 new, 1 fixed, 4 unchanged" in text
    assert "NEW secret.stale-key" in text and "FIXED secret.plaintext" in text
    assert "field.unknown (warning)" not in text  # unchanged ones are counted, not listed
    rows = list(csv.DictReader(io.StringIO(now.render("csv"))))
    assert {r["code"]: r["change"] for r in rows}["secret.stale-key"] == "new"


def test_baseline_compares_only_codes_both_runs_checked():
    earlier = Report([Finding.of("secret.plaintext", 1, 1, "a", "k", "m")], {"codes": ["secret.plaintext"]})
    now = Report([Finding.of("field.unknown", 2, 2, "a", "x", "m")], {"codes": ["field.unknown"]}).compare(earlier)
    assert now.baseline.fixed == []  # this run did not look for plaintext secrets
    assert [f.code for f in now.baseline.new] == ["field.unknown"]


@pytest.mark.parametrize("text, message", [
    ("not json", "is not JSON"),
    ("[1, 2]", 'no "findings" list'),
    ('{"findings": [{"code": "made.up"}]}', "finding #1 has no known audit code"),
])
def test_bad_baseline_is_a_one_line_usage_error(text, message):
    with pytest.raises(UsageError, match=message):
        Report.from_json(text, source="b.json")


def test_missing_baseline_file(tmp_path):
    with pytest.raises(UsageError, match="cannot read the baseline"):
        Report.load(tmp_path / "nope.json")


def test_to_pandas():
    frame = sample().to_pandas()
    assert list(frame.columns) == list(FIELDS)
    assert len(frame) == 5
    assert str(frame["installation_id"].dtype) == "Int64"
    assert frame["installation_id"].isna().sum() == 2
    assert frame.groupby("code", observed=True).size()["user.email-case-duplicate"] == 2


def test_unknown_format():
    with pytest.raises(UsageError, match="unknown format"):
        sample().render("xml")
