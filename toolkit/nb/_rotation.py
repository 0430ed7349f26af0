"""`RotationPlan`: what a key rotation would do, from `toolkit.keys.rotation.rotate(dry_run=True)`.

Only counts are shown — no timings (they differ run to run), no values.
"""

from __future__ import annotations

from . import _html
from ._table import Table
from ._text import plural, text_table


class RotationPlan:
    def __init__(self, report: dict):
        self.report = {k: v for k, v in report.items() if k != "seconds"}

    @property
    def values(self) -> dict:
        return self.report["values"]

    @property
    def would_rotate(self) -> int:
        return self.values["rotated"]

    def rows(self) -> list[tuple]:
        values = self.values
        rows = [(f"re-encrypt from {label}", n) for label, n in values["rotated_from"].items()]
        rows.append(("already under the current key", values["already_current"]))
        rows += [(f"skip: {reason}", n) for reason, n in values["skipped"].items()]
        return rows

    def table(self) -> Table:
        return Table("Rotation dry run (values)", ("action", "values"), self.rows(), numeric={"values"})

    def to_pandas(self):
        return self.table().to_pandas()

    @property
    def headline(self) -> str:
        rows = self.report["rows"]
        current = next(iter(self.report["keys"].items()))
        return (f"Dry run: would re-encrypt {plural(self.would_rotate, 'value')} under the current key "
                f"({current[1]}), changing {rows['changed']} of {plural(rows['scanned'], 'installation')}; "
                "nothing was written")

    def notes(self) -> list[str]:
        rows = self.report["rows"]
        notes = []
        if rows["unknown_app"]:
            notes.append(f"{plural(rows['unknown_app'], 'installation')} of apps not in the registry skipped")
        if rows["config_not_object"]:
            notes.append(f"{plural(rows['config_not_object'], 'installation')} whose config is not an object skipped")
        if any(self.values["skipped"].values()):
            notes.append("skipped values are never written: see the audit's secret.* findings")
        return notes

    def __repr__(self) -> str:
        return "\n".join([self.headline, text_table(("action", "values"), self.rows(), numeric={"values"}),
                          *self.notes()])

    def _repr_html_(self) -> str:
        return _html.block(_html.heading(self.headline),
                           _html.table(("action", "values"), self.rows(), numeric={"values"}),
                           *(_html.note(n) for n in self.notes()))
