"""Output to stdout, byte for byte: the one way commands write data.

`click.echo` strips ANSI sequences whenever stdout is not a terminal, so a secret, a JSON
document or a CSV cell holding `\\x1b[31m` would reach a pipe changed, with exit 0. Here the
bytes go to `sys.stdout.buffer` untouched. Text meant for people is escaped before it gets
here (`safe_text.escape_text`); this module never alters what it is given.
"""

from __future__ import annotations

import os
import sys

import click

SIGPIPE_EXIT = 141  # what a shell reports for a process killed by SIGPIPE (128 + 13)


def write_stdout(data: str | bytes, *, newline: bool = False) -> None:
    """`data` (str: encoded UTF-8) on stdout exactly, plus "\\n" when `newline`."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if newline:
        payload += b"\n"
    stream = sys.stdout
    buffer = getattr(stream, "buffer", None)
    try:
        if buffer is None:  # a text-only stream (an embedding host): nothing can strip here either
            stream.write(payload.decode("utf-8", errors="surrogateescape"))
            stream.flush()
            return
        stream.flush()  # whatever went through the text layer first stays first
        buffer.write(payload)
        buffer.flush()
    except BrokenPipeError:
        # `toolkit audit --format csv | head`: the reader left; stop quietly, as `cat` does.
        # stdout points at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
        raise click.exceptions.Exit(SIGPIPE_EXIT) from None
