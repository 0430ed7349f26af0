"""`ConfigResult`: one installation's config as a notebook shows it — every secret masked.

Built on `toolkit.inspection` (the same view `toolkit show` and the dashboard use), so a value
is decrypted, classified and masked the same way everywhere. `.reveal(field)` is the only way
to the plaintext: it writes the access log (via="notebook") first, then returns the value.
"""

from __future__ import annotations

from .. import inspection
from ..safe_text import escape_text
from . import _html
from ._pandas import frame
from ._text import plural, text_table

COLUMNS = ("field", "label", "type", "value", "state", "key")


class ConfigResult:
    def __init__(self, view: inspection.InstallationView, settings):
        self.view = view
        self._settings = settings

    @property
    def id(self) -> int:
        return self.view.id

    def field(self, key: str) -> inspection.FieldView:
        return self.view.field(key)

    def reveal(self, field: str) -> str:
        """The plaintext of one field — logged in the access log before it is returned.

        Anything displayed from here on is in the notebook's saved outputs: reveal only what
        you must, and clear the output before sharing the notebook.
        """
        return inspection.reveal(self.view, field, self._settings, via="notebook")

    def rows(self) -> list[tuple]:
        rows = []
        for f in self.view.fields:
            key = f"{f.key_label} {f.key_fingerprint}" if f.key_label else ""
            state = f.state + (f" ({f.note})" if f.note else "")
            rows.append((f.key, f.label, f.type + (" (secret)" if f.is_secret else ""), f.display, state, key))
        return rows

    def to_pandas(self):
        """One row per field, secrets as their mask."""
        return frame(COLUMNS, self.rows())

    def to_dict(self) -> dict:
        return self.view.as_dict()

    # --- renderings --------------------------------------------------------------------
    def _facts(self) -> list[tuple[str, str]]:
        v = self.view
        name = f" ({v.user_name})" if v.user_name else ""
        app = v.app_name if v.app_known else f"{v.app_id} (not in the registry)"
        return [
            ("user", f"{v.user_id} {v.user_email}{name}"),
            ("app", f"{app} [{v.app_id}]"),
            ("status", v.status),
            ("installed", _when(v.installed_at)),
            ("updated", _when(v.updated_at)),
        ]

    @property
    def headline(self) -> str:
        secrets = sum(1 for f in self.view.fields if f.is_secret)
        return (f"Installation {self.view.id}: {plural(len(self.view.fields), 'field')}, "
                f"{secrets} secret{'' if secrets == 1 else 's'} (masked)")

    def __repr__(self) -> str:
        lines = [self.headline]
        lines += [f"  {name:<9} {escape_text(value)}" for name, value in self._facts()]  # emails, app ids
        if self.view.config_problem:
            lines.append(f"  ! {escape_text(self.view.config_problem)}")
        if self.view.fields:
            lines += ["", text_table(COLUMNS, self.rows())]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = [_html.heading(self.headline), _html.table(("", ""), self._facts())]
        if self.view.config_problem:
            parts.append(_html.note(f"! {self.view.config_problem}"))
        if self.view.fields:
            parts.append(_html.table(COLUMNS, self.rows()))
        return _html.block(*parts)


def _when(value) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value else "-"
