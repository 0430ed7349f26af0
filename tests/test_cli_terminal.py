"""Text output on a terminal (toolkit/cli/_terminal.py): severity colours, wrapping at the
width, a pager for long output — each only on a real terminal, each off in a pipe.

The commands run in a real pseudo-terminal (the child's stdout is a tty, as an operator's
is); the pager is `PAGER` pointing at a script that records what it was given.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import pytest
from _pty import run_in_pty

from _paths import ROOT
from toolkit.cli._terminal import audit_severity, wrap

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RED, YELLOW, BLUE = "\x1b[31m", "\x1b[33m", "\x1b[34m"


def _env(settings, **extra) -> dict:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(settings.data_dir),
           "TERM": "xterm-256color", "TOOLKIT_DATA_DIR": str(settings.data_dir),
           "TOOLKIT_STATE_DIR": str(settings.state_dir), "TOOLKIT_ACCESS_LOG": str(settings.access_log),
           "COLUMNS": "200", "LINES": "500", "PAGER": "cat"}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def in_pty(args, env, timeout: float = 60.0) -> tuple[int, str]:
    """`python -m toolkit ARGS` on a pseudo-terminal; its exit code and what it wrote there."""
    code, captured = run_in_pty(args, env, env["HOME"], timeout)
    return code, captured.decode("utf-8").replace("\r\n", "\n")


def in_pipe(args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=env["HOME"], timeout=60, stdin=subprocess.DEVNULL)


AUDIT = ["audit", "--fail-on", "never", "--no-progress", "--no-save"]


@pytest.fixture
def recording_pager(tmp_path):
    """A PAGER that records its stdin in a file; returns (command, path of the record)."""
    record = tmp_path / "paged.txt"
    script = tmp_path / "pager.sh"
    script.write_text(f"#!/bin/sh\ncat > '{record}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), record


# ---- colours ------------------------------------------------------------------------------

def test_a_terminal_gets_severity_colours(demo_settings):
    code, shown = in_pty(AUDIT, _env(demo_settings))
    assert code == 0, shown[-2000:]
    lines = shown.splitlines()
    heading = next(line for line in lines if "secret.plaintext (error) —" in line)
    assert heading.startswith(RED) and heading.endswith("\x1b[0m")
    assert next(line for line in lines if "secret.stale-key (warning) —" in line).startswith(YELLOW)
    assert next(line for line in lines if "status.not-configured (info) —" in line).startswith(BLUE)
    finding = next(line for line in lines if line.startswith("  installation "))
    assert "\x1b" not in finding  # findings (customer text) are never painted


def test_no_color_and_a_pipe_get_none(demo_settings):
    code, shown = in_pty(AUDIT, _env(demo_settings, NO_COLOR="1"))
    assert code == 0 and "secret.plaintext (error) —" in shown
    assert "\x1b" not in shown
    piped = in_pipe(AUDIT, _env(demo_settings))
    assert piped.returncode == 0 and "secret.plaintext (error) —" in piped.stdout
    assert "\x1b" not in piped.stdout


def test_show_colours_a_broken_secret_as_its_finding(demo_settings):
    report = json.loads(in_pipe([*AUDIT, "--format", "json", "--code", "secret.malformed"],
                                _env(demo_settings)).stdout)
    finding = report["findings"][0]
    code, shown = in_pty(["show", finding["installation_id"]], _env(demo_settings))
    assert code == 0, shown
    line = next(line for line in shown.splitlines() if "<malformed>" in line)
    assert line.startswith(RED)
    assert not any(line.startswith("\x1b") for line in shown.splitlines() if "  user " in line)


# ---- wrapping -----------------------------------------------------------------------------

def test_wrapping_at_columns_never_splits_a_word(demo_settings):
    width = 52
    code, shown = in_pty([*AUDIT, "--no-pager"], _env(demo_settings, COLUMNS=str(width), NO_COLOR="1"))
    assert code == 0, shown[-2000:]
    lines = [line for line in shown.splitlines() if not line.startswith("Using the embedded demo")]
    piped = in_pipe(AUDIT, _env(demo_settings)).stdout
    assert max(map(len, piped.splitlines())) > width  # there is something to wrap
    for line in lines:
        assert len(line) <= width or len(line.split()) == 1, line  # too long only when one word
    assert shown.count("\n") > piped.count("\n")  # it did wrap
    # The same words in the same order: a break only ever replaced spaces.
    assert " ".join(lines).split() == piped.split()


def test_continuation_lines_are_indented_and_long_words_stay_whole():
    line = "  installation 5, user 3, stripe: a value https://example.test/" + "x" * 80 + " ends here"
    pieces = wrap(line, 40)
    assert pieces[0] == "  installation 5, user 3, stripe: a"
    assert all(piece.startswith("    ") for piece in pieces[1:])
    assert "    https://example.test/" + "x" * 80 in pieces  # wider than 40, not broken
    assert " ".join(pieces).split() == line.split()
    assert wrap("code   severity  findings", 40) == ["code   severity  findings"]  # fits: as is


def test_only_the_codes_table_decides_a_colour():
    assert audit_severity("secret.plaintext (error) — 3 findings") == "error"
    assert audit_severity("NEW secret.stale-key (warning) — 1 finding") == "warning"
    assert audit_severity("status.not-configured        info             1") == "info"
    # A message (customer text) that imitates a heading, and a code with the wrong severity.
    assert audit_severity("  installation 1: secret.plaintext (error) — 3 findings") is None
    assert audit_severity("secret.plaintext (info) — 3 findings") is None
    assert audit_severity("made.up (error) — 1 finding") is None


# ---- the pager ----------------------------------------------------------------------------

def test_long_output_goes_to_the_pager(demo_settings, recording_pager):
    pager, record = recording_pager
    code, shown = in_pty(AUDIT, _env(demo_settings, PAGER=pager, LINES="20"))
    assert code == 0, shown[-2000:]
    paged = record.read_text()
    assert "secret.plaintext (error) —" in paged and RED in paged  # colours go through (less -R)
    assert "secret.plaintext (error) —" not in shown  # the pager drew it, not the command
    piped = in_pipe(AUDIT, _env(demo_settings)).stdout
    assert ANSI.sub("", paged) == piped  # all of it, wrapped at 200 columns: nothing to wrap


@pytest.mark.parametrize("how", ["flag", "env"])
def test_no_pager_writes_to_the_terminal(demo_settings, recording_pager, how):
    pager, record = recording_pager
    args = [*AUDIT, "--no-pager"] if how == "flag" else AUDIT
    extra = {"TOOLKIT_NO_PAGER": "1"} if how == "env" else {}
    code, shown = in_pty(args, _env(demo_settings, PAGER=pager, LINES="20", **extra))
    assert code == 0 and "secret.plaintext (error) —" in shown
    assert not record.exists()


def test_short_output_and_pipes_are_not_paged(demo_settings, recording_pager):
    pager, record = recording_pager
    code, shown = in_pty(["show", "1"], _env(demo_settings, PAGER=pager, LINES="40"))
    assert code == 0 and "installation 1" in shown
    assert not record.exists()
    piped = in_pipe(AUDIT, _env(demo_settings, PAGER=pager, LINES="5"))
    assert piped.returncode == 0 and "secret.plaintext (error) —" in piped.stdout
    assert not record.exists()


@pytest.mark.parametrize("command", [["keys", "status"], ["registry", "check"],
                                     ["repair", "--fix", "secret.plaintext", "--dry-run"],
                                     ["keys", "rotate", "--dry-run"]])
def test_every_text_command_pages(demo_settings, recording_pager, command):
    pager, record = recording_pager
    code, shown = in_pty(command, _env(demo_settings, PAGER=pager, LINES="3"))
    assert code == 0, shown
    assert record.read_text().strip()
    record.unlink()
    code, shown = in_pty([*command, "--no-pager"], _env(demo_settings, PAGER=pager, LINES="3"))
    assert code == 0, shown
    assert not record.exists()


def test_a_pager_that_quits_early_ends_the_command_quietly(demo_settings):
    code, shown = in_pty(AUDIT, _env(demo_settings, PAGER="true", LINES="5"))
    assert code == 0, shown
    assert "error" not in shown.replace("Using the embedded demo", "")
    assert "Traceback" not in shown
