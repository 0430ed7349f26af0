"""Hostile rows and hostile input, as an attacker would plant them (DESIGN.md §4.6).

Customer text holds OSC 52 clipboard writes, title changes, screen clears and CSI sequences
in emails, names, app ids, config keys and values. `toolkit show` and the audit's text run in
a real pseudo-terminal (the child believes it writes to a terminal, as an operator's would);
the dashboard runs under Pilot. What reaches the screen must hold no ESC, BEL or C1 control,
and the data must still be there, escaped. Machine output (CSV, JSON) stays byte-exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys

import pytest
from _pty import run_in_pty

from _paths import ROOT
from toolkit.safe_text import escape_text

CLIPBOARD = "\x1b]52;c;ZWNobyBQV05FRAo=\x07"  # OSC 52: puts "echo PWNED⏎" in the clipboard
TITLE = "\x1b]0;owned\x07"
CLEAR = "\x1b[2J\x1b[H"
CSI = "\x1b[31m"
C1_CSI = "\x9b1;31m"  # the one-character CSI some terminals obey
BIDI = "\u202e"

EMAIL = f"mallory{CLIPBOARD}@example.com"
NAME = f"Mal{TITLE}lory"
APP_ID = f"str{CLEAR}ipe"
KEY = f"note{TITLE}"
VALUE = f"{CSI}red{C1_CSI}{BIDI}txt.exe"
URL = f"https://x.example/{CLIPBOARD}"
PLANTED = (EMAIL, NAME, APP_ID, KEY, VALUE, URL)


def _sqlite_file(settings):
    return settings.data_dir / "demo.sqlite3"


@pytest.fixture
def hostile(demo_settings):
    """Two installations of one hostile user: a known app with hostile keys and values, and
    an app id no registry knows. Returns (known_id, unknown_id)."""
    connection = sqlite3.connect(_sqlite_file(demo_settings))
    with connection:
        user_id = connection.execute(
            "INSERT INTO users (name, email, role) VALUES (?, ?, 'customer')", (NAME, EMAIL)).lastrowid
        config = {"region": "us", "webhookUrl": URL, KEY: VALUE, "notes": CLEAR + "x"}
        known = connection.execute(
            "INSERT INTO app_installations (user_id, app_id, status, config) VALUES (?, 'stripe', 'installed', ?)",
            (user_id, json.dumps(config))).lastrowid
        unknown = connection.execute(
            "INSERT INTO app_installations (user_id, app_id, status, config) VALUES (?, ?, 'installed', ?)",
            (user_id, APP_ID, json.dumps({KEY: VALUE}))).lastrowid
    connection.close()
    return known, unknown


def _env(settings) -> dict:
    # NO_COLOR and PAGER=cat: colours and paging are the toolkit's own business; with them
    # off, any ESC that reaches the terminal can only have come from the data.
    # PYTHONPATH: this checkout's code, whatever `toolkit` the interpreter has installed.
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(settings.data_dir), "TERM": "xterm-256color",
            "NO_COLOR": "1", "PAGER": "cat", "TOOLKIT_DATA_DIR": str(settings.data_dir),
            "TOOLKIT_ACCESS_LOG": str(settings.access_log), "COLUMNS": "200", "LINES": "50"}


def run_toolkit(args, settings, timeout: float = 60.0):
    """`python -m toolkit ARGS` with pipes (text) and no terminal."""
    return subprocess.run([sys.executable, "-m", "toolkit", *map(str, args)], capture_output=True, text=True,
                          env=_env(settings), cwd=settings.data_dir, timeout=timeout, stdin=subprocess.DEVNULL)


def in_pty(args, settings, timeout: float = 60.0) -> tuple[int, bytes]:
    """Run `python -m toolkit ARGS` on a pseudo-terminal; its exit code and every byte it wrote."""
    return run_in_pty(args, _env(settings), settings.data_dir, timeout)


def assert_nothing_a_terminal_obeys(shown: str) -> None:
    assert "\x1b" not in shown, "ESC reached the terminal"
    assert "\x07" not in shown, "BEL reached the terminal"
    assert not [c for c in shown if 0x80 <= ord(c) <= 0x9F], "a C1 control reached the terminal"
    assert BIDI not in shown


def test_show_in_a_terminal_shows_the_data_escaped(hostile, demo_settings):
    known, unknown = hostile
    code, raw = in_pty(["show", known], demo_settings)
    shown = raw.decode("utf-8")
    assert code == 0, shown
    assert_nothing_a_terminal_obeys(shown)
    for planted in (EMAIL, NAME, URL, VALUE):
        assert escape_text(planted) in shown
    assert "\\x1b]52;c;ZWNobyBQV05FRAo=\\x07" in shown  # the clipboard write, visible as text

    code, raw = in_pty(["show", unknown], demo_settings)
    shown = raw.decode("utf-8")
    assert code == 0, shown
    assert_nothing_a_terminal_obeys(shown)
    assert escape_text(APP_ID) in shown and escape_text(KEY) in shown


def test_the_audit_text_in_a_terminal_shows_the_data_escaped(hostile, demo_settings):
    code, raw = in_pty(["audit", "--format", "text", "--no-progress", "--fail-on", "never"], demo_settings)
    shown = raw.decode("utf-8")
    assert code == 0, shown[-2000:]
    assert_nothing_a_terminal_obeys(shown)
    assert escape_text(APP_ID) in shown  # app.unknown names it
    assert f"field {escape_text(KEY)}" in shown  # field.unknown names the key


def test_decrypt_in_a_terminal_escapes_the_plaintext(demo_settings):
    from toolkit.demo import demo_keyring

    value = demo_keyring(demo_settings).encrypt(f"pa{CLIPBOARD}ss")
    code, raw = in_pty(["decrypt", value], demo_settings)
    shown = raw.decode("utf-8")
    assert code == 0, shown
    assert_nothing_a_terminal_obeys(shown)
    assert escape_text(f"pa{CLIPBOARD}ss") in shown and "redirect stdout" in shown


def test_csv_and_json_stay_byte_exact_and_stdout_equals_the_output_file(hostile, demo_settings):
    """Machine output is not for a terminal: the bytes the data holds, in a pipe as in a file."""
    env = _env(demo_settings)
    run = lambda *args: subprocess.run([sys.executable, "-m", "toolkit", "audit", "--fail-on", "never", *args],  # noqa: E731
                                       capture_output=True, env=env, cwd=demo_settings.data_dir, timeout=120)
    path = demo_settings.data_dir / "report.csv"
    to_stdout, to_file = run("--format", "csv"), run("--format", "csv", "--output", str(path))
    assert to_stdout.returncode == to_file.returncode == 0, to_stdout.stderr
    assert to_stdout.stdout == path.read_bytes()
    assert APP_ID.encode() in to_stdout.stdout and KEY.encode() in to_stdout.stdout  # not stripped

    document = json.loads(run("--format", "json").stdout)
    assert APP_ID in {f["app_id"] for f in document["findings"]}

    shown = subprocess.run([sys.executable, "-m", "toolkit", "show", str(hostile[0]), "--json"],
                           capture_output=True, env=env, cwd=demo_settings.data_dir, timeout=60)
    data = json.loads(shown.stdout)
    assert (data["user_email"], data["user_name"]) == (EMAIL, NAME)
    assert data["config"][KEY]["value"] == VALUE and data["config"]["webhookUrl"]["value"] == URL


# ---- the dashboard, under Pilot ------------------------------------------------------------

def _screen_text(app) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", app.export_screenshot())).replace("\xa0", " ")


def _visible(app) -> str:
    """Every character the screen's widgets render (not only what SVG can draw)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def test_the_dashboard_shows_hostile_rows_escaped(hostile, demo_settings):
    from toolkit.context import Context
    from toolkit.tui import DashboardApp, DataSource

    known, unknown = hostile
    context = Context(demo_settings, announce=lambda line: None)
    app = DashboardApp(DataSource.from_context(context))

    async def scenario():
        async with app.run_test(size=(200, 50)) as pilot:
            async def settle():
                for _ in range(3):
                    await app.workers.wait_for_complete()
                    await pilot.pause()

            await settle()
            app.open_installation(known)
            await settle()
            detail = _visible(app) + _screen_text(app)
            app.open_installation(unknown)
            await settle()
            other = _visible(app) + _screen_text(app)
            return detail, other

    detail, other = asyncio.run(scenario())
    for shown in (detail, other):
        assert_nothing_a_terminal_obeys(shown)
    assert escape_text(EMAIL) in detail and escape_text(URL) in detail
    assert escape_text(VALUE)[:20] in detail
    assert escape_text(APP_ID) in other


def test_editing_a_hostile_value_starts_from_an_empty_input(hostile, demo_settings):
    """An Input draws its value raw, so a value holding escapes is never put in one."""
    from textual.widgets import DataTable, Input

    from toolkit.context import Context
    from toolkit.tui import DashboardApp, DataSource
    from toolkit.tui.screens.modals import InputScreen

    known, _ = hostile
    app = DashboardApp(DataSource.from_context(Context(demo_settings, announce=lambda line: None)), write=True)

    async def scenario():
        async with app.run_test(size=(200, 50)) as pilot:
            for _ in range(2):
                await app.workers.wait_for_complete()
                await pilot.pause()
            app.open_installation(known)
            for _ in range(3):
                await app.workers.wait_for_complete()
                await pilot.pause()
            table = app.screen.query_one(DataTable)
            keys = [row.key.value for row in table.ordered_rows]
            table.move_cursor(row=keys.index("webhookUrl"))
            await pilot.press("e")
            await pilot.pause()
            assert isinstance(app.screen, InputScreen)
            value = app.screen.query_one(Input).value
            shown = _visible(app)
            await pilot.press("escape")
            return value, shown

    value, shown = asyncio.run(scenario())
    assert value == ""
    assert_nothing_a_terminal_obeys(shown)


# ---- bad input: one line, exit 2, never a traceback ----------------------------------------

def _one_line_exit_2(result) -> str:
    err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert result.returncode == 2, err
    assert err.count("\n") <= 2 and "Traceback" not in err  # the demo notice, then the error
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ")
    return line


@pytest.mark.parametrize("args", [["show", "١٢"], ["show", "²"], ["show", "12x"], ["show", "99999999999999999999"],
                                  ["audit", "--user", "²"], ["audit", "--user", "١٢"]])
def test_ids_in_other_digits_are_refused_never_read_as_numbers(demo_settings, args):
    result = run_toolkit(args, demo_settings)
    line = _one_line_exit_2(result)
    assert "ASCII digits" in line or "too large" in line
    assert result.stdout == ""


def test_show_by_an_ascii_id_still_works(hostile, demo_settings):
    result = run_toolkit(["show", f"0{hostile[0]}"], demo_settings)
    assert result.returncode == 0 and f"installation {hostile[0]}" in result.stdout


@pytest.mark.parametrize("content", [
    lambda: "[" * 200_000 + "]" * 200_000,
    lambda: '{"a": ' * 50_000 + "1" + "}" * 50_000,
])
def test_a_deeply_nested_registry_or_baseline_is_one_line(demo_settings, tmp_path, content):
    deep = tmp_path / "deep.json"
    deep.write_text(content())
    for args in (["--registry", str(deep), "registry", "check"], ["--registry", str(deep), "audit"],
                 ["audit", "--baseline", str(deep)]):
        line = _one_line_exit_2(run_toolkit(args, demo_settings))
        assert "nested too deeply" in line


def test_dev_zero_as_the_registry_or_baseline_is_refused_with_a_bound(demo_settings):
    for args in (["--registry", "/dev/zero", "registry", "check"], ["audit", "--baseline", "/dev/zero"]):
        line = _one_line_exit_2(run_toolkit(args, demo_settings))
        assert "larger than 16 MB" in line


@pytest.mark.parametrize("text, words", [("alice\x00", "NUL"), ("user:١٢", "ASCII digits"), ("user:²", "ASCII digits")])
def test_a_bad_dashboard_filter_is_a_message(text, words):
    from toolkit.errors import UsageError
    from toolkit.tui.filters import parse_filter

    with pytest.raises(UsageError) as caught:
        parse_filter(text)
    assert words in caught.value.one_line() and "\x00" not in caught.value.one_line()


def test_an_error_quoting_data_is_one_escaped_line():
    from toolkit.errors import NotFound

    line = NotFound(f"no app {APP_ID}\nsecond line", hint=f"check {KEY}").one_line()
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert escape_text(APP_ID) in line and escape_text(KEY) in line


def test_an_id_is_ascii_digits_whatever_int_accepts():
    from hypothesis import given
    from hypothesis import strategies as st

    from toolkit.errors import UsageError
    from toolkit.ids import ID_MAX, parse_id, parse_user

    @given(st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1))
    def other_digits_are_refused(text):
        if text.isascii():
            return
        with pytest.raises(UsageError):
            parse_id(text)
        with pytest.raises(UsageError):
            parse_user(text)

    other_digits_are_refused()
    assert int("١٢") == 12  # what the toolkit must not do
    assert parse_id("0042") == 42 and parse_id(str(ID_MAX)) == ID_MAX and parse_user("7") == 7
    assert parse_user("Alice@Example.com") == "Alice@Example.com"
    for bad in (str(ID_MAX + 1), "-1", "+1", " 1", "1_000", "", True, -1):
        with pytest.raises(UsageError):
            parse_id(bad)
