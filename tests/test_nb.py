"""toolkit.nb, tested directly: renderings (HTML escaped, secrets masked), drill-down, pandas
with and without it, plots, the logged reveal, and the layering (no terminal stack)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from toolkit import nb
from toolkit.context import Context
from toolkit.crypto.access_log import read_entries
from toolkit.demo import DEMO_REGISTRY_PATH, DemoData
from toolkit.errors import NotFound, UsageError
from toolkit.registry import load_registry

MARKUP = '<img src=x onerror="alert(1)">[bold red]boom[/]'


@pytest.fixture
def tk(demo_settings):
    session = nb.Session(Context(demo_settings, announce=lambda line: None))
    yield session
    session.close()


@pytest.fixture(scope="module")
def planted():
    data = DemoData(load_registry(DEMO_REGISTRY_PATH))
    data.generate()
    return data.planted


def raw_config(settings, installation_id):
    connection = sqlite3.connect(settings.data_dir / "demo.sqlite3")
    try:
        (text,) = connection.execute("SELECT config FROM app_installations WHERE id = ?", (installation_id,)).fetchone()
    finally:
        connection.close()
    return json.loads(text)


def table_rows(settings):
    connection = sqlite3.connect(settings.data_dir / "demo.sqlite3")
    try:
        return connection.execute("SELECT * FROM app_installations ORDER BY id").fetchall()
    finally:
        connection.close()


def execute(settings, sql, params=()):
    connection = sqlite3.connect(settings.data_dir / "demo.sqlite3")
    try:
        connection.execute(sql, params)
        connection.commit()
    finally:
        connection.close()


# --- the public surface ------------------------------------------------------------------


def test_all_is_explicit_and_complete():
    public = {name for name in vars(nb) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(nb, name)).__name__ == "module"}
    assert set(nb.__all__) == public - modules
    assert sorted(nb.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n)) == nb.__all__
    for name in ("connect", "audit", "installations", "users", "config", "key_status", "rotation_dry_run"):
        assert callable(getattr(nb, name)) and getattr(nb, name).__doc__


# --- tables: escaping and plain text ------------------------------------------------------


def test_table_html_escapes_every_cell_and_text_keeps_one_line_per_row():
    table = nb.Table("T <b>", ("id", "name"), [(1, MARKUP), (2, "line\nbreak & 'quote'")], numeric={"id"})
    page = table._repr_html_()
    assert "<img" not in page and "<b>" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;[bold red]boom[/]" in page
    assert "&amp; &#x27;quote&#x27;" in page
    text = repr(table)
    assert text.splitlines()[0] == "T <b> (2 rows)"
    assert "line\\nbreak" in text and len(text.splitlines()) == 5  # title, header, rule, 2 rows
    assert text.splitlines()[3].startswith(" 1  <img")  # numbers right-aligned, text as is


def test_table_shows_a_page_and_keeps_every_row():
    table = nb.Table("Many", ("n",), [(i,) for i in range(60)])
    assert len(table) == 60 and table[59] == (59,)
    assert "… 35 more rows" in repr(table) and "… 35 more rows" in table._repr_html_()
    assert table._repr_html_().count("<tr>") == 1 + 25
    assert table.select("n").column("n") == list(range(60))


def test_user_markup_from_the_database_is_escaped(tk, demo_settings):
    execute(demo_settings, "UPDATE users SET name = ? WHERE id = 7", (MARKUP,))
    users = tk.users(email="omar.kowalski7")
    assert users.column("name") == [MARKUP]
    assert "<img" not in users._repr_html_() and "&lt;img" in users._repr_html_()
    assert MARKUP in repr(users)  # plain text is plain: nothing to interpret there


def test_config_html_escapes_plain_values_and_masks_secrets(tk, demo_settings):
    config = raw_config(demo_settings, 4)
    config["region"] = MARKUP
    execute(demo_settings, "UPDATE app_installations SET config = ? WHERE id = 4", (json.dumps(config),))
    plaintexts = [tk.keyring.decrypt(config[k]).secret.reveal() for k in ("apiKey", "webhookSecret")]
    view = tk.config(4)
    renderings = [view._repr_html_(), repr(view), str(view.to_dict()), json.dumps(view.rows(), ensure_ascii=False)]
    for text in renderings:
        for plaintext in plaintexts:
            assert plaintext not in text
        assert "••••••" + plaintexts[0][-4:] in text
    assert "<img" not in renderings[0] and "&lt;img" in renderings[0]
    assert "password (secret)" in renderings[1] and "current" in renderings[1]


def test_config_names_problem_secrets_without_showing_them(tk, planted):
    by_code = {p.code: p for p in planted}
    plaintext_view = tk.config(by_code["secret.plaintext"].installation_id)
    field = plaintext_view.field("apiKey")
    assert field.state == "plaintext" and field.display.startswith("••••••")
    assert field.value.reveal() not in repr(plaintext_view) + plaintext_view._repr_html_()
    malformed = tk.config(by_code["secret.malformed"].installation_id)
    assert "<malformed>" in repr(malformed) and "&lt;malformed&gt;" in malformed._repr_html_()
    not_object = tk.config(by_code["config.not-object"].installation_id)
    assert "config is not a JSON object" in repr(not_object)


def test_reveal_returns_the_plaintext_and_logs_it_without_the_value(tk, demo_settings):
    stored = raw_config(demo_settings, 4)["apiKey"]
    expected = tk.keyring.decrypt(stored).secret.reveal()
    view = tk.config(4)
    assert read_entries(demo_settings) == []
    assert view.reveal("apiKey") == expected
    entries = read_entries(demo_settings)
    assert [(e["installation_id"], e["field"], e["via"]) for e in entries] == [(4, "apiKey", "notebook")]
    assert entries[0]["key_fingerprint"] == tk.keyring.current.fingerprint
    assert expected not in demo_settings.access_log.read_text()
    log = tk.access_log().select("installation_id", "field", "via")
    assert log.rows == ((4, "apiKey", "notebook"),)


def test_lookups_filter_and_report_missing_rows(tk):
    stripe = tk.installations(app="stripe", status="installed", limit=500)
    assert len(stripe) > 10 and set(stripe.column("app_id")) == {"stripe"}
    assert set(stripe.column("status")) == {"installed"}
    assert tk.installations(user_id=2).column("id") == [3, 4]
    assert "first 5 rows" in repr(tk.installations(limit=5))
    assert tk.users(role="admin").column("id") == [1, 2, 3, 4, 5]
    with pytest.raises(NotFound):
        tk.config(10**9)
    with pytest.raises(UsageError):
        tk.installations(status="deleted")


def test_overview_counts_add_up(tk):
    overview = tk.overview()
    assert overview.users == 1500
    assert sum(overview.by_status.values()) == overview.total == sum(overview.by_app.values())
    for app, counts in overview.by_app_status.items():
        assert sum(counts.values()) == overview.by_app[app]
    assert overview.headline in repr(overview) and overview.headline in overview._repr_html_()


# --- the audit ------------------------------------------------------------------------


def test_audit_finds_every_planted_code_and_renders_counts(tk, planted):
    result = tk.audit()
    assert {p.code for p in planted} <= {f.code for f in result}
    for p in planted:
        if p.installation_id is not None:
            assert any(f.code == p.code and f.installation_id == p.installation_id for f in result), p
    assert sum(result.by_severity.values()) == len(result)
    assert result.installations_read == tk.overview().total
    text, page = repr(result), result._repr_html_()
    assert text.startswith(result.headline) and f"of {result.installations_read} read" in text
    for code, count in result.by_code.items():
        if count:
            assert code in page and code in text
    assert 'color:#b3261e;font-weight:600">error</span>' in page  # severities as badges
    assert "<td" in page and "duration" not in page and "sqlite" not in page


def test_audit_drill_down_by_app_code_and_field(tk):
    result = tk.audit()
    stripe = result.where(app="stripe")
    assert len(stripe) and {f.app_id for f in stripe} == {"stripe"}
    secrets = stripe.where(code="secret")  # a prefix
    assert {f.code.split(".")[0] for f in secrets} == {"secret"}
    assert secrets.title == "Audit, where app='stripe' and code='secret'"
    assert set(secrets.by_code) == {c for c in result.checked_codes if c.startswith("secret.")}
    region = result.where(code="field.invalid", field="region")
    assert [f.field for f in region] == ["region"]
    assert len(result.where(code="field.*")) == sum(n for c, n in result.by_code.items() if c.startswith("field."))
    with pytest.raises(UsageError):
        result.where(code="no-such-code")
    # The same narrowing done in SQL by the engine gives the same findings.
    assert [f.key for f in tk.audit(app="stripe", code="secret")] == [f.key for f in secrets]


def test_audit_tables(tk):
    result = tk.audit()
    codes = result.codes()
    assert all(n > 0 for n in codes.column("count"))
    assert len(result.codes(all_codes=True)) == len(result.checked_codes)
    apps = result.apps()
    assert sum(apps.column("total")) == len(result)
    assert apps.column("app_id")[0] == "stripe"  # most findings first
    assert len(result.table()) == len(result)


# --- pandas, present and absent ---------------------------------------------------------


def test_to_pandas_with_pandas(tk):
    pandas = pytest.importorskip("pandas")
    result = tk.audit()
    frame = result.to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == ["code", "severity", "installation_id", "user_id", "app_id", "field", "message", "hint"]
    assert len(frame) == len(result)
    assert frame.groupby("code", observed=True).size().to_dict() == {c: n for c, n in result.by_code.items() if n}
    config = tk.config(4).to_pandas()
    assert config["value"].str.startswith("••••••").sum() == 2
    assert tk.installations(limit=7).to_pandas().shape == (7, 8)
    assert tk.key_status().to_pandas()["values"].sum() == tk.key_status().usage.values
    assert list(tk.overview().to_pandas().columns) == ["app_id", "installed", "configured", "total"]


WITHOUT = textwrap.dedent("""
    import sys
    sys.modules["pandas"] = None      # a real import failure for `import pandas`
    sys.modules["matplotlib"] = None
    from toolkit import nb
    tk = nb.connect(demo=True)
    result = tk.audit()
    assert len(result) > 0 and "<table" in result._repr_html_() and repr(result)
    cfg = tk.config(4)
    assert "••••••" in repr(cfg) and "••••••" in cfg._repr_html_()
    assert repr(tk.key_status()) and repr(tk.overview()) and repr(tk.installations(limit=3))
    messages = []
    for call in (result.to_pandas, cfg.to_pandas, tk.installations().to_pandas, tk.overview().to_pandas,
                 result.plot, tk.overview().plot):
        try:
            call()
        except ImportError as error:
            messages.append(str(error))
    print("\\n".join(messages))
""")


def test_without_pandas_and_matplotlib_everything_else_works(demo_template, tmp_path):
    env = {**os.environ, "TOOLKIT_DATA_DIR": str(demo_template.parent), "TOOLKIT_ACCESS_LOG": str(tmp_path / "log")}
    result = subprocess.run([sys.executable, "-c", WITHOUT], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 6
    assert all("pip install 'installation-toolkit[pandas]'" in line for line in lines[:4])
    assert all("pip install 'installation-toolkit[plot]'" in line for line in lines[4:])


# --- plots -------------------------------------------------------------------------------


def test_findings_plot_stacks_every_finding(tk):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    result = tk.audit()
    figure = result.plot()
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    assert sum(patch.get_width() for patch in axes.patches) == len(result)
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    found = [c for c, n in result.by_code.items() if n]
    from toolkit.audit import CODES, SEVERITIES

    rank = {s: n for n, s in enumerate(SEVERITIES)}
    assert legend == sorted(found, key=lambda c: rank[CODES[c].severity])  # grouped: errors, warnings, info
    # Each code's bars in its severity's family: reds for errors, ambers for warnings, blues for info.
    for code, handle in zip(legend, axes.get_legend().legend_handles):
        red, green, blue, _ = handle.get_facecolor()
        severity = CODES[code].severity
        if severity == "info":
            assert blue > red and blue > green, code
        else:
            assert red > blue and red >= green, code
            assert (green > blue + 0.15) == (severity == "warning"), code  # amber has green in it, red less
    assert [t.get_text() for t in axes.get_yticklabels()][-1] == "stripe"  # the most findings on top


def test_installations_plot_stacks_statuses(tk):
    pytest.importorskip("matplotlib")
    overview = tk.overview()
    (axes,) = overview.plot().axes
    assert sum(patch.get_height() for patch in axes.patches) == overview.total
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["installed", "configured"]


# --- keys and rotation ----------------------------------------------------------------


def test_key_status_and_rotation_dry_run_agree_with_the_audit(tk, demo_settings):
    before = table_rows(demo_settings)
    stale = len(tk.audit(code="secret.stale-key"))
    status = tk.key_status()
    assert [row[:1] + row[2:3] for row in status.rows()[:2]] == [("current", status.usage.per_key[0]), ("previous #1", stale)]
    assert f"still authenticates {stale} values" in repr(status)
    assert tk.keyring.current.material.hex() not in repr(status) + status._repr_html_()
    plan = tk.rotation_dry_run()
    assert plan.would_rotate == stale
    assert ("re-encrypt from previous #1", stale) in plan.rows()
    assert "nothing was written" in repr(plan) and " s)" not in repr(plan)
    assert table_rows(demo_settings) == before  # the dry run wrote nothing


# --- connecting ------------------------------------------------------------------------


def test_fresh_sessions_are_separate_demo_copies(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # ignored by fresh=True
    first = nb.connect(fresh=True)
    assert first.is_demo and first.scratch.is_dir() and first.settings.access_log.parent == first.scratch
    path = first.scratch / "demo.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("DELETE FROM app_installations WHERE id = 4")
    connection.commit()
    connection.close()
    second = nb.connect(fresh=True)
    assert second.scratch != first.scratch
    assert nb.current() is second
    assert nb.config(4).id == 4  # the module-level helpers use the newest session
    assert "demo database (a fresh copy)" in repr(second)


def test_connect_without_demo_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    (tmp_path / ".env").write_text(f"TOOLKIT_DATA_DIR={tmp_path / 'data'}\n")
    session = nb.connect(env_dir=tmp_path)
    assert session.is_demo and session.settings.data_dir == tmp_path / "data"
    assert (tmp_path / "data" / "demo.sqlite3").exists()


# --- layering ----------------------------------------------------------------------------


def test_using_the_helpers_loads_no_terminal_stack_and_no_optional_extra(demo_template, tmp_path):
    code = textwrap.dedent("""
        import json, sys
        from toolkit import nb
        tk = nb.connect(demo=True)
        for result in (tk.overview(), tk.audit(), tk.config(4), tk.installations(), tk.users(), tk.key_status(),
                       tk.rotation_dry_run()):
            result._repr_html_(), repr(result)
        print(json.dumps(sorted(sys.modules)))
    """)
    env = {**os.environ, "TOOLKIT_DATA_DIR": str(demo_template.parent), "TOOLKIT_ACCESS_LOG": str(tmp_path / "log")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert not {m for m in loaded if m.split(".")[0] in ("textual", "pandas", "matplotlib")}
    assert not {m for m in loaded if m.startswith("toolkit.tui")}


# --- writes: through the config service -------------------------------------------------


def test_fixing_a_finding_through_the_config_service(tk):
    (finding,) = tk.audit(app="stripe").where(code="field.invalid", field="region")
    tk.configs.update_config(finding.installation_id, {"region": "eu"})
    assert tk.config(finding.installation_id).field("region").display == "eu"
    assert len(tk.audit(app="stripe").where(installation_id=finding.installation_id)) == 0


# ---- issue 15: code=, severity colours, one limit, interactive tables (opt-in) ----------------

def _save_an_audit(tk):
    from toolkit.audit.incremental import audit
    from toolkit.audit.store import open_store

    with open_store(tk.settings) as store:
        return audit(tk.database, tk.registry, tk.keyring, store=store, jobs=1)


def test_installations_by_code_come_from_the_latest_saved_audit(tk):
    with pytest.raises(UsageError, match="saved audit"):
        tk.installations(code="secret.stale-key")
    report = _save_an_audit(tk)
    stale = sorted({f.installation_id for f in report.findings if f.code == "secret.stale-key"})
    secret = {f.installation_id for f in report.findings if f.code.startswith("secret.") and f.installation_id}
    assert stale and tk.installations(code="secret.stale-key").column("id") == stale
    assert set(tk.installations(code="secret", limit=1000).column("id")) == secret  # a prefix, as --code
    assert tk.installations(code=["secret.stale-key"], ids=stale[:1]).column("id") == stale[:1]
    narrowed = tk.installations(code="secret", app="stripe", limit=1000)
    assert narrowed.rows and {row[3] for row in narrowed} == {"stripe"}
    assert set(narrowed.column("id")) <= secret
    with pytest.raises(UsageError):
        tk.installations(code="no.such-code")


def test_every_table_colours_severities_alike(tk):
    from toolkit.nb._html import SEVERITY_COLORS

    result = tk.audit()
    red = SEVERITY_COLORS["error"]
    for table in (result.codes(), result.table(), result.apps()):
        page = table._repr_html_()
        assert f'<span style="color:{red}' in page, table.title
    # The findings table as a plain Table (not through AuditResult) is coloured too.
    assert f'<span style="color:{red};font-weight:600">error</span>' in result.table()._repr_html_()
    # A count column named after a severity: non-zero counts coloured, zeros left plain.
    apps = result.apps()._repr_html_()
    assert f'<th style="text-align:left;padding:2px 8px;border-bottom:1px solid #999"><span style="color:{red}">error</span></th>' in apps
    customer = nb.Table("t", ("severity", "note"), [("error", MARKUP)])._repr_html_()
    assert "<img" not in customer and "&lt;img" in customer


def test_one_limit_name_and_default_everywhere():
    import inspect

    for helper in (nb.Session.installations, nb.Session.users, nb.Session.history, nb.history):
        assert inspect.signature(helper).parameters["limit"].default == nb.LIMIT, helper


def test_interactive_tables_are_opt_in_and_the_default_html_does_not_depend_on_itables(tk):
    itables = pytest.importorskip("itables")
    table = tk.users(limit=3)
    static = table._repr_html_()
    assert "<table" in static and "itables" not in static.lower()  # installed, yet not used
    try:
        assert tk.interactive() is True
        shown = table._repr_html_()
        assert "<table" in shown and shown != static and "new ITable(" in shown
        hostile = nb.Table("t", ("note",), [(MARKUP,)])._repr_html_()
        assert "<img src=x" not in hostile and "&lt;img src=x" in hostile  # cells stay escaped
    finally:
        tk.interactive(False)
    assert table._repr_html_() == static
    assert itables is not None


WITHOUT_ITABLES = textwrap.dedent("""
    import sys
    sys.modules["itables"] = None      # a real import failure for `import itables`
    from toolkit import nb
    tk = nb.connect(demo=True)
    print(tk.audit().codes()._repr_html_())
    try:
        tk.interactive()
    except ImportError as error:
        print(error)
""")


def test_without_itables_the_html_is_the_same_and_interactive_names_the_extra(demo_template, tmp_path, tk):
    env = {**os.environ, "TOOLKIT_DATA_DIR": str(demo_template.parent), "TOOLKIT_ACCESS_LOG": str(tmp_path / "log")}
    result = subprocess.run([sys.executable, "-c", WITHOUT_ITABLES], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    html, message = result.stdout.rstrip("\n").split("\n")
    assert html == tk.audit().codes()._repr_html_()  # here itables may well be installed: same bytes
    assert "pip install 'installation-toolkit[itables]'" in message
