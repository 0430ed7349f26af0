"""Text for people on a terminal: severity colours, wrapping at the width, a pager — as git does.

All three happen only when stdout is a terminal. In a pipe or a file the text goes through
`write_stdout` untouched, byte for byte what the command rendered (scripts and `--output`
depend on that). On a terminal:

- colours: error red, warning yellow, info blue — unless `NO_COLOR` is set (no-color.org)
  or `TERM=dumb`;
- wrapping: a line wider than the terminal breaks at spaces, never inside a word (a word
  longer than the width keeps its line whole); continuation lines are indented;
- a pager: when the output is taller than the terminal, it goes to `$PAGER` (default
  `less -FRX`; `PAGER=cat` or an empty `PAGER` means none), unless `--no-pager` or
  `TOOLKIT_NO_PAGER=1`. Output is held only until it outgrows the screen, so a million
  findings still stream.

What reaches here is already escaped (`safe_text.escape_text`): the only escapes this module
writes are its own colours.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import click

from ._output import write_stdout

NO_PAGER_ENV = "TOOLKIT_NO_PAGER"
DEFAULT_PAGER = "less -FRX"
CONTINUATION_INDENT = "  "  # beyond the line's own indent
# SGR colours of the severities (DESIGN.md §4.4's three).
SGR = {"error": "31", "warning": "33", "info": "34"}
RESET = "\x1b[0m"
_CHUNK = 1 << 16  # bytes held before a write in a pipe

no_pager_option = click.option(
    "--no-pager", "no_pager", is_flag=True, envvar=NO_PAGER_ENV,
    help=f"Never page long output (env {NO_PAGER_ENV}=1). Default on a terminal: $PAGER, else `{DEFAULT_PAGER}`.")


def colour_wanted(stream, environ=os.environ) -> bool:
    return _isatty(stream) and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def paint(text: str, severity: str | None, colour: bool) -> str:
    code = SGR.get(severity) if colour else None
    return f"\x1b[{code}m{text}{RESET}" if code and text else text


def cells(text: str) -> int:
    from rich.cells import cell_len  # wide characters take two columns

    return cell_len(text)


def wrap(line: str, width: int) -> list[str]:
    """`line` in pieces at most `width` columns wide, broken only at spaces; continuation
    pieces get the line's indent plus two spaces. A word wider than that stays whole, and
    a line that fits is returned as is (aligned columns keep their spacing)."""
    if width <= 0 or cells(line) <= width:
        return [line]
    body = line.lstrip(" ")
    lead = line[: len(line) - len(body)]
    pieces, current, used = [], lead, cells(lead)
    for word in body.split(" "):  # "" between two spaces: the run is kept while it fits
        size = cells(word)
        if current.strip() and used + 1 + size > width:
            pieces.append(current.rstrip(" "))
            current = lead + CONTINUATION_INDENT
            used = cells(current)
            if not word:
                continue
        elif current.strip():
            current += " "
            used += 1
        current += word
        used += size
    pieces.append(current.rstrip(" "))
    return pieces


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def pager_command(environ=os.environ) -> str | None:
    """What to page through, or None: `PAGER` (empty or `cat`: none), else `less -FRX` if installed."""
    command = environ.get("PAGER")
    if command is not None:
        command = command.strip()
        return None if command in ("", "cat") else command
    return DEFAULT_PAGER if shutil.which(shlex.split(DEFAULT_PAGER)[0]) else None


class _PagerQuit(Exception):
    """The pager exited (the operator pressed q): stop rendering, quietly."""


class TextOutput:
    """Where a command's text goes. `line(text, severity)` one line at a time, or `write(piece)`
    for pieces of newline-terminated text, each line's severity from `classify(line)`."""

    def __init__(self, *, no_pager: bool = False, classify=None, stream=None, environ=None):
        environ = os.environ if environ is None else environ
        self.stream = sys.stdout if stream is None else stream
        self.terminal = _isatty(self.stream)
        self.colour = self.terminal and colour_wanted(self.stream, environ)
        size = shutil.get_terminal_size()  # COLUMNS and LINES win, as for every tool
        self.width, self.height = size.columns, size.lines
        self.pager = None if (no_pager or not self.terminal) else pager_command(environ)
        self.classify = classify or (lambda line: None)
        self._held: list[str] = []  # rendered lines not written yet
        self._rows = 0  # the screen rows they take (does the output still fit?)
        self._size = 0  # their characters (time to write them?)
        self._partial = ""
        self._process = None
        self._environ = environ

    # ---- what commands call --------------------------------------------------------------
    def write(self, piece: str) -> None:
        if not self.terminal:
            self._hold(piece, 0)
            return
        lines = (self._partial + piece).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.line(line, self.classify(line))

    def line(self, text: str, severity: str | None = None) -> None:
        if not self.terminal:
            self._hold(text + "\n", 0)
            return
        for piece in wrap(text, self.width):
            rows = max(1, -(-cells(piece) // self.width)) if self.width > 0 else 1
            self._hold(paint(piece, severity, self.colour) + "\n", rows)

    # ---- holding, paging -----------------------------------------------------------------
    def _hold(self, text: str, rows: int) -> None:
        self._held.append(text)
        self._rows += rows
        self._size += len(text)
        if self._process is not None:
            if self._size >= _CHUNK:
                self._to_pager()
        elif self.pager is None:  # a pipe, or no pager: write as it comes, in chunks
            if self._size >= _CHUNK:
                self._flush()
        elif self._rows >= self.height:  # more than fits above the prompt: page it
            self._start_pager()

    def _flush(self) -> None:
        if self._held:
            write_stdout("".join(self._held))
        self._held, self._rows, self._size = [], 0, 0

    def _start_pager(self) -> None:
        environ = dict(self._environ)
        environ.setdefault("LESS", "FRX")  # as git: colours through, quit if one screen, no clearing
        try:
            self._process = subprocess.Popen(self.pager, shell=True, stdin=subprocess.PIPE, env=environ)
        except OSError:
            self.pager = None  # cannot start it: write to the terminal instead
            return
        self._to_pager()

    def _to_pager(self) -> None:
        data = "".join(self._held).encode("utf-8", errors="surrogateescape")
        self._held, self._rows, self._size = [], 0, 0
        try:
            self._process.stdin.write(data)
        except (BrokenPipeError, OSError):
            raise _PagerQuit from None

    # ---- the end -------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        try:
            if self._partial and kind is None:
                self.line(self._partial, self.classify(self._partial))
                self._partial = ""
        except _PagerQuit:
            pass
        if self._process is None:
            self._flush()  # after an error too: what was rendered before it, as a pipe would have it
            return False
        try:
            if kind is None:
                self._to_pager()
        except _PagerQuit:
            pass
        try:
            self._process.stdin.close()
        except OSError:
            pass
        _wait_for(self._process)
        return kind is _PagerQuit


def _wait_for(process) -> None:
    """Until the pager exits: Ctrl-C belongs to it while it runs (git ignores it too), and the
    shell must not get the terminal back under a pager still drawing."""
    while True:
        try:
            process.wait()
            return
        except KeyboardInterrupt:
            continue


def error_line(text: str, severity: str) -> None:
    """A diagnostic on stderr, in its severity's colour when stderr is a colour terminal."""
    click.echo(paint(text, severity, colour_wanted(sys.stderr)), err=True, color=True)


def audit_severity(line: str) -> str | None:
    """The severity of a line of the audit's text report: a code's heading
    (`secret.plaintext (error) — 3 findings`) or its row in the summary table. Matched on the
    codes table, so a finding's message (customer text, indented) never colours a line."""
    from ..codes import CODES

    head = line.removeprefix("NEW ").removeprefix("FIXED ")
    code, _, rest = head.partition(" ")
    entry = CODES.get(code)
    if entry is None:
        return None
    rest = rest.lstrip(" ")
    if rest.startswith(f"({entry.severity}) — ") or rest.startswith(f"{entry.severity} "):
        return entry.severity
    return None


def report_severity(line: str) -> str | None:
    """A write command's summary (`keys rotate`, `repair`): what was left or skipped is a warning."""
    if line.startswith(("rows still changing", "concurrent writes", "  skipped ")):
        return "warning"
    if line.startswith("skipped (never written)") and "see `toolkit audit" in line:
        return "warning"
    return None
