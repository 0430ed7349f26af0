"""Copying out of the dashboard: OSC 52 where the terminal allows, and always a file as well.

A terminal gives no answer to an OSC 52 write, so whether the clipboard got it is unknowable
(tmux needs `set-clipboard on`, many terminals refuse by default). The copy is also written
to `clipboard.txt` in the export folder (mode 0600) and the message names both, so the
operator always has a way to the text. Never used for a revealed secret's file copy: secrets
go to the clipboard only (the installation screen's `c`), not to disk.
"""

from __future__ import annotations

import os


def copy_text(app, text: str, what: str) -> str:
    """Copy `text` (no secret); returns the one-line message to show."""
    app.copy_to_clipboard(text)
    try:
        path = app.export_folder() / "clipboard.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    except OSError as exc:
        return f"Copied {what} to the clipboard (OSC 52, if the terminal allows); no file copy: {exc}"
    return f"Copied {what} to the clipboard (OSC 52, if the terminal allows) and to {path}"
