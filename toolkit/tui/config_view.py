"""One `inspection.FieldView` as the cells of the installation screen's config table (pure).

The model — which fields, in which order, what each value is, what is masked — is
`toolkit.inspection`'s, shared with `toolkit show` and the notebooks. This module only
decides how a field looks here: every cell is rich `Text` (never markup, so a stored
`[bold]` stays literal), and a masked value shows dots and how it is stored, nothing of the
value itself — not even the last characters `show` prints, since a dashboard is on screen
for anyone passing by.
"""

from __future__ import annotations

from rich.text import Text

from .. import inspection
from ..safe_text import escape_text
from ..crypto import mask
from . import cells

DOTS_MASK = mask("", 0)  # dots only: nothing of the value, not even its length

# How a masked value is stored, in a few words (the state's meaning, not its value).
_STATE_WORDS = {
    inspection.ENCRYPTED: "encrypted · current key",
    inspection.PLAINTEXT_SECRET: "stored as PLAINTEXT",
    inspection.MALFORMED: "malformed ciphertext",
    inspection.UNDECRYPTABLE: "cannot decrypt: wrong key or tampered",
    inspection.NO_KEY: "encrypted (no key configured)",
    inspection.EMPTY: "empty",
    inspection.CIPHERTEXT: "a ciphertext in a non-secret field",
}


def state_words(field: inspection.FieldView) -> str:
    """One line on how a masked value is stored; "" for values shown as stored."""
    if not field.masked or field.state == inspection.ABSENT:
        return ""
    if field.state == inspection.STALE:
        return f"encrypted · previous key #{field.key_index} (stale)"
    if field.state == inspection.NON_STRING:
        return field.note or "not a string"
    return _STATE_WORDS.get(field.state, field.state)


def value_cell(field: inspection.FieldView) -> Text:
    if field.state == inspection.ABSENT:
        return Text(inspection.NOT_SET, style="dim")
    if field.masked:
        words = state_words(field)
        shown = Text(DOTS_MASK, style="bold")
        shown.append(f"  {escape_text(words)}", style="dim" if words.startswith("encrypted") else "yellow")
        return shown
    if field.state == inspection.NON_STRING:
        return cells.text(field.value, "magenta")
    return cells.text(field.value)


def row_cells(field: inspection.FieldView) -> tuple[Text, Text, Text, Text]:
    """Field, Key, Type, Value — the installation screen's columns."""
    return (
        cells.text(field.label, "bold" if field.masked else ""),
        cells.text(field.key),
        cells.text(field.type, "yellow" if field.type == "unknown" else "dim"),
        value_cell(field),
    )
