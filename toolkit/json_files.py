"""Reading a JSON file someone handed us (the registry, a --baseline report) without letting
it hang or crash the command: the one owner of those bounds.

- At most `MAX_FILE_BYTES` are read, so `/dev/zero`, a FIFO that never ends or a 10 GB file
  as the registry is refused in one line instead of filling memory.
- Nesting deeper than Python's recursion limit is refused by name instead of surfacing as a
  RecursionError traceback.

Problems with the content raise `JSONFileError` (a ValueError) whose text is one line with
no path; callers add the path and map it to their own error and exit code. Problems opening
the file stay `OSError`s, so callers can say "not found" or "is a directory" their way.
"""

from __future__ import annotations

import json
from pathlib import Path

MAX_FILE_BYTES = 16 * 1024 * 1024  # far above any registry or report a person would pass


class JSONFileError(ValueError):
    pass


def read_text(path, limit: int = MAX_FILE_BYTES) -> str:
    """The file's text (UTF-8), reading at most `limit` bytes."""
    with open(Path(path), "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise JSONFileError(f"larger than {limit // (1024 * 1024)} MB: refusing to read it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise JSONFileError("not UTF-8 text") from None


def parse(text: str):
    """`json.loads`, with its two failures as one-line `JSONFileError`s."""
    try:
        return json.loads(text)
    except RecursionError:
        raise JSONFileError("JSON nested too deeply to read") from None
    except json.JSONDecodeError as exc:
        raise JSONFileError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def load(path, limit: int = MAX_FILE_BYTES):
    return parse(read_text(path, limit))
