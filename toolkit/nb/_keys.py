"""`KeyStatus`: which key authenticates how many stored secrets (toolkit.keys.usage).

Keys are shown by label and fingerprint only, never their material.
"""

from __future__ import annotations

from . import _html
from ._table import Table
from ._text import plural, text_table

COLUMNS = ("key", "fingerprint", "values", "retirable")


class KeyStatus:
    def __init__(self, usage):
        self.usage = usage

    def rows(self) -> list[tuple]:
        u = self.usage
        rows = [(key.label, key.fingerprint, count, "yes" if key.index and not count else "")
                for key, count in zip(u.keyring.keys, u.per_key)]
        rows += [("no key (undecryptable)", "", u.undecryptable, ""), ("plaintext", "", u.plaintext, ""),
                 ("malformed", "", u.malformed, "")]
        return rows

    def table(self) -> Table:
        return Table("Stored secrets per key", COLUMNS, self.rows(), numeric={"values"})

    def to_pandas(self):
        return self.table().to_pandas()

    def to_dict(self) -> dict:
        return self.usage.as_dict()

    @property
    def headline(self) -> str:
        u = self.usage
        return (f"{plural(u.values, 'stored secret')} in {plural(u.installations, 'installation')} "
                f"({u.empty} empty; {plural(u.unknown_app, 'installation')} of apps not in the registry, their ciphertexts counted)")

    def advice(self) -> list[str]:
        u = self.usage
        lines = []
        for key, count in zip(u.keyring.previous, u.per_key[1:]):
            if count:
                lines.append(f"{key.label} ({key.fingerprint}) still authenticates {plural(count, 'value')}: "
                             "rotate before retiring it.")
            else:
                lines.append(f"{key.label} ({key.fingerprint}) authenticates no value: it can be retired.")
        if u.undecryptable:
            lines.append(f"{plural(u.undecryptable, 'value')} decrypt{'s' if u.undecryptable == 1 else ''} under no key: "
                         "audit code secret.undecryptable.")
        return lines

    def __repr__(self) -> str:
        return "\n".join([self.headline, text_table(COLUMNS, self.rows(), numeric={"values"}), *self.advice()])

    def _repr_html_(self) -> str:
        return _html.block(_html.heading(self.headline), _html.table(COLUMNS, self.rows(), numeric={"values"}),
                           *(_html.note(line) for line in self.advice()))
