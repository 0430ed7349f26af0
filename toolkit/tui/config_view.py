"""One `inspection.FieldView` as the cells of the installation screen's config table (pure).

The model — which fields, in which order, what each value is, what is masked — is
`toolkit.inspection`'s, shared with `toolkit show` and the notebooks. This module only
decides how a field looks here: every cell is rich `Text` (never markup, so a stored
`[bold]` stays literal), and a masked value shows `Secret.masked` — the one mask of the CLI
and the notebooks (`••••••3f9a`, TOOLKIT_MASK_VISIBLE characters) — and how it is stored.
A value the operator revealed replaces its mask in its row until it is hidden again.
`raw_config` is the config as JSON (the `j` view), built from the same view: masked the same way.
"""

from __future__ import annotations

import json

from rich.text import Text

from .. import inspection
from ..crypto import Secret, mask
from ..safe_text import escape_json_text, escape_text
from . import cells

DOTS_MASK = mask("", 0)  # a masked value with nothing to decrypt (malformed, no key…)

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


def masked_text(field: inspection.FieldView) -> str:
    """The field's mask: the Secret's own (with its tail) when it decrypted, dots otherwise."""
    return field.value.masked if isinstance(field.value, Secret) else DOTS_MASK


def value_cell(field: inspection.FieldView, revealed=None) -> Text:
    """`revealed`: the field's Secret when the operator revealed it (shown instead of the mask)."""
    if field.state == inspection.ABSENT:
        return Text(inspection.NOT_SET, style="dim")
    if revealed is not None:
        shown = cells.text(revealed.reveal(), "reverse")
        shown.append("  revealed (v hides)", style="dim")
        return shown
    if field.masked:
        words = state_words(field)
        shown = Text(masked_text(field), style="bold")
        shown.append(f"  {escape_text(words)}", style="dim" if words.startswith("encrypted") else "yellow")
        return shown
    if field.state == inspection.NON_STRING:
        return cells.text(field.value, "magenta")
    return cells.text(field.value)


def row_cells(field: inspection.FieldView, revealed=None) -> tuple[Text, Text, Text, Text]:
    """Field, Key, Type, Value — the installation screen's columns."""
    return (
        cells.text(field.label, "bold" if field.masked else ""),
        cells.text(field.key),
        cells.text(field.type, "yellow" if field.type == "unknown" else "dim"),
        value_cell(field, revealed),
    )


def raw_value(field: inspection.FieldView):
    """The field's stored JSON value as it may be shown: a secret (or any ciphertext) is its mask."""
    if field.masked:
        return masked_text(field)
    if field.state == inspection.EMPTY:
        return ""
    return field.value  # a plain string, or the non-string JSON value as stored


def raw_config(view: inspection.InstallationView) -> str:
    """The config as indented JSON — every key the config holds, in the view's order
    (the registry's fields, then the others), secrets masked — or what it is instead when it
    is not an object. Valid JSON, and safe on a terminal: what JSON leaves raw is \\u-escaped."""
    if view.config_problem:
        return f"// {escape_text(view.config_problem)}"
    stored = {f.key: raw_value(f) for f in view.fields if f.state != inspection.ABSENT}
    text = json.dumps(stored, ensure_ascii=False, indent=2, default=str)
    return escape_json_text(text)
