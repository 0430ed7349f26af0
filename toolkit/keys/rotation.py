"""Key rotation: re-encrypt every secret stored under a previous key with the current key.

Which values: every value of the fields the registry declares as `password`, and every
strict `iv:tag:ciphertext` value anywhere else — an unknown field, a text field, an app the
registry no longer knows — because a ciphertext is a secret wherever it sits, and a key is
retired only once nothing needs it (DESIGN.md §4.4). Each value is classified by
`keyring.inspect`:

    previous       decrypted with that previous key, re-encrypted under the current key
                   with a fresh random IV — the exact plaintext BYTES, so a value that is not
                   valid UTF-8 (or is itself a ciphertext-looking string) comes out as the
                   app wrote it
    current        left alone (counted "already current"; `include_current` re-encrypts
                   these too, with fresh IVs — the remedy for `secret.nonce-reuse`)
    undecryptable, malformed, plaintext
                   never written: skipped and counted by reason (DESIGN.md §2: a failed
                   decrypt is not "probably plaintext")

The writing — pages, compare-and-swap on the old ciphertexts, retries, resumability, the
pooler rules — is `rewrite.run_rewrite`, shared with repairs. Rotation leaves `updated_at`
alone: the app reads exactly the same values afterwards.
"""

from __future__ import annotations

import dataclasses
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..writes import rewrite
from ..db import installations
from ..crypto import Keyring, format_ciphertext
from ..crypto._format import TAG_LENGTH as _GCM_TAG
from ..errors import ConfigError

ROTATED = "rotated"
CURRENT = "current"
SKIP_REASONS = ("undecryptable", "malformed", "plaintext")
UNKNOWN_APP = "row:app.unknown"  # rows whose app the registry does not know: fields unknown
NOT_OBJECT = "row:config.not-object"
_FROM = "from:"  # "from:1" = rotated from previous #1
_FROM_LABELS = tuple(f"{_FROM}{i}" for i in range(16))
DEFAULT_BATCH_SIZE = rewrite.DEFAULT_BATCH_SIZE
# Processes over disjoint id ranges. More than the cores: each worker spends about half its
# time waiting for the database (read, then write), and the others fill that time
# (measured on 2 cores, 1M installations: 2 workers 3.9x the plain UPDATE, 3 workers 3.1x, 4 workers 2.5x).
DEFAULT_WORKERS = 4


def check_keyring(keyring: Keyring, *, include_current: bool = False) -> None:
    """Refuse a keyring rotation cannot work with, before touching anything (a key listed
    twice is refused by Keyring itself)."""
    keyring.current  # noqa: B018 — ConfigError "ENCRYPTION_KEY is not set"
    if not keyring.previous and not include_current:
        raise ConfigError(
            "ENCRYPTION_KEY_PREVIOUS is not set: there is no previous key to rotate from",
            hint="set ENCRYPTION_KEY to the new key and ENCRYPTION_KEY_PREVIOUS to the old one(s), comma-separated",
        )


class Sealer:
    """Encrypt plaintext bytes under the current key, exactly as the app's crypto.ts does.

    Bytes, not text: `Keyring.encrypt` takes a str (and rightly refuses ciphertext-looking
    input), but rotation must carry the decrypted bytes over unchanged, whatever they are.
    """

    _POOL = 4096  # IVs drawn per os.urandom call: one system call per value adds up over millions

    def __init__(self, keyring: Keyring):
        self._encrypt = AESGCM(keyring.current.material).encrypt
        self._iv_length = keyring.iv_length
        self._ivs = b""
        self._next = 0

    def __call__(self, plaintext: bytes) -> str:
        start, ivs = self._next, self._ivs
        if start >= len(ivs):
            # Fresh randomness for every IV all the same: the pool is never reused or shared.
            ivs = self._ivs = os.urandom(self._iv_length * self._POOL)
            start = 0
        end = self._next = start + self._iv_length
        iv = ivs[start:end]
        sealed = self._encrypt(iv, plaintext, None)
        return format_ciphertext(iv, sealed[-_GCM_TAG:], sealed[:-_GCM_TAG])


class RotationPlanner:
    """Per row: which password values to re-encrypt, with the old ciphertexts as the condition."""

    def __init__(self, secret_keys: dict, keyring: Keyring, *, include_current: bool = False):
        self._args = (secret_keys, keyring, include_current)
        self.secret_keys = secret_keys  # app id -> its password field keys
        if include_current:
            self.inspect, self._original_index = keyring.inspect_in_field, None
        else:
            # While a rotation runs most values are under a previous key, and a GCM open under
            # the wrong key costs a raised InvalidTag: probe with the previous keys first.
            # (`_original_index` maps the probe's key index back to the keyring's.)
            order = keyring.keys[1:] + keyring.keys[:1]
            probe = Keyring.from_materials([key.material for key in order], iv_length=keyring.iv_length)
            self.inspect, self._original_index = probe.inspect_in_field, [key.index for key in order]
        self.seal = Sealer(keyring)
        self.include_current = include_current
        self._labels = [key.label for key in keyring.keys]

    def __reduce__(self):  # to worker processes; AESGCM objects are rebuilt there
        secret_keys, keyring, include_current = self._args
        return (_rebuild_planner, (secret_keys, keyring, include_current))

    def sources(self, tally) -> list[str]:
        """The key each re-encrypted value was under, in patch order: its `from:N` tally label
        (a dry run's rows: `rewrite.describe`)."""
        labels = self._labels
        return [labels[int(label[len(_FROM):])] for label in tally if label.startswith(_FROM)]

    @classmethod
    def from_registry(cls, registry, keyring, **kwargs) -> "RotationPlanner":
        return cls({app.id: app.secret_keys for app in registry}, keyring, **kwargs)

    def plan(self, row: installations.Row) -> rewrite.Plan:
        # The hot loop of a rotation (millions of rows): locals, prebuilt tuples, and
        # tuple.__new__ for the two NamedTuples (their Python-level __new__ costs).
        keys = self.secret_keys.get(row.app_id)
        config = row.config
        if config.__class__ is not dict:
            return _NOT_OBJECT_PLAN if keys is not None else _UNKNOWN_APP_PLAN
        inspect, original_index = self.inspect, self._original_index
        expect = patch = None
        tally = [] if keys is not None else [UNKNOWN_APP]
        keys = keys or ()
        for key, value in config.items():
            if value.__class__ is not str or not value:
                if key in keys and value.__class__ is not str and value is not None:
                    tally.append("malformed")  # a non-string in a password field
                continue  # an optional secret left blank: nothing stored, nothing to rotate
            status = inspect(value, password_field=key in keys)
            if status is None:
                continue  # plain text outside the password fields; a ciphertext anywhere is a secret
            index = status[1]  # key_index
            if index is None:
                tally.append(status[0])  # kind: undecryptable, malformed, plaintext
                continue
            if original_index is not None:
                index = original_index[index]
                if index == 0:
                    tally.append(CURRENT)
                    continue
            if patch is None:
                expect, patch = {}, {}
            expect[key] = value
            patch[key] = self.seal(status[2])  # plaintext
            tally += _ROTATED_FROM[index] if index < len(_ROTATED_FROM) else (ROTATED, f"{_FROM}{index}")
        if patch is None:
            return _new(rewrite.Plan, (None, tally))
        change = _new(installations.Change, (row.id, expect, patch) + _CHANGE_DEFAULTS)
        return _new(rewrite.Plan, (change, tally))


_new = tuple.__new__
_CHANGE_DEFAULTS = tuple(installations.Change._field_defaults[name] for name in installations.Change._fields[3:])
_ROTATED_FROM = tuple((ROTATED, label) for label in _FROM_LABELS)
_UNKNOWN_APP_PLAN = rewrite.Plan(None, (UNKNOWN_APP,))
_NOT_OBJECT_PLAN = rewrite.Plan(None, (NOT_OBJECT,))


@dataclasses.dataclass
class RotationReport:
    result: rewrite.RewriteResult
    keys: dict  # label -> fingerprint, current first
    include_current: bool = False

    @property
    def rotated(self) -> int:
        return self.result.tally[ROTATED]

    @property
    def already_current(self) -> int:
        return self.result.tally[CURRENT]

    @property
    def skipped(self) -> dict:
        return {reason: self.result.tally[reason] for reason in SKIP_REASONS}

    @property
    def complete(self) -> bool:
        """Every row was settled (none left behind by concurrent writes)."""
        return not self.result.left

    def as_dict(self, *, listing: bool = True) -> dict:
        """The JSON summary; a dry run's adds `changes` (its rows) and `changes_not_listed`."""
        r = self.result
        labels = list(self.keys)
        return {
            "dry_run": r.dry_run,
            "complete": self.complete,
            "keys": self.keys,
            "values": {
                "rotated": self.rotated,
                "rotated_from": {labels[int(k[len(_FROM):])]: n for k, n in sorted(r.tally.items())
                                 if k.startswith(_FROM)},
                "already_current": self.already_current,
                "skipped": self.skipped,
            },
            "rows": {
                "scanned": r.rows_scanned,
                "changed": r.rows_changed,
                "unknown_app": r.tally[UNKNOWN_APP],
                "config_not_object": r.tally[NOT_OBJECT],
                "deleted_meanwhile": r.gone,
            },
            **r.summary_tail(listing=listing),
        }

    def json_chunks(self):
        """`as_dict()` as indented JSON, in pieces (a dry run's rows streamed)."""
        return self.result.json_chunks(self.as_dict(listing=False))

    def render(self) -> str:
        data = self.as_dict(listing=False)
        values, rows, conflicts = data["values"], data["rows"], data["conflicts"]
        verb = "would re-encrypt" if self.result.dry_run else "re-encrypted"
        sources = ", ".join(f"{n} from {label} ({self.keys[label]})" for label, n in values["rotated_from"].items())
        current = list(self.keys.items())[0]
        lines = [
            f"{'Dry run: ' if self.result.dry_run else ''}{verb} {values['rotated']} values "
            f"under the current key ({current[1]}){': ' + sources if sources else ''}.",
            f"already under the current key: {values['already_current']}",
        ]
        skipped = values["skipped"]
        lines.append("skipped (never written): " + ", ".join(f"{n} {reason}" for reason, n in skipped.items())
                     + ("  — see `toolkit audit --code secret`" if any(skipped.values()) else ""))
        extra = []
        if rows["unknown_app"]:
            extra.append(f"{_rows(rows['unknown_app'])} of apps not in the registry skipped")
        if rows["config_not_object"]:
            extra.append(f"{_rows(rows['config_not_object'])} whose config is not an object skipped")
        if rows["deleted_meanwhile"]:
            extra.append(f"{_rows(rows['deleted_meanwhile'])} deleted meanwhile")
        lines.append(f"rows: {rows['scanned']} scanned, {rows['changed']} {'to change' if self.result.dry_run else 'changed'}"
                     + "".join(f", {e}" for e in extra) + f" ({data['batches']} batches, {data['seconds']} s)")
        if self.result.changes is not None:  # a dry run: the rows it would change
            lines += self.result.changes.render()
        if conflicts["retried"] or conflicts["left"]:
            lines.append(f"concurrent writes: {conflicts['retried']} compare-and-swap misses retried, "
                         f"{_rows(conflicts['left'])} left")
        if conflicts["left"]:
            shown = ", ".join(map(str, conflicts["left_ids"][:20]))
            lines.append(f"rows still changing, left for the next run: {shown}{', …' if conflicts['left'] > 20 else ''}"
                         " — run `toolkit keys rotate` again")
        elif not self.result.dry_run:
            lines.append("next: `toolkit keys status` — a previous key that authenticates 0 values can be retired")
        return "\n".join(lines)


def rotate(database, registry, keyring: Keyring, *, dry_run: bool = False, include_current: bool = False,
           batch_size: int = DEFAULT_BATCH_SIZE, max_retries: int = rewrite.DEFAULT_MAX_RETRIES,
           workers: int = DEFAULT_WORKERS, progress=None, after_batch=None,
           list_limit: int | None = rewrite.DEFAULT_LIST_LIMIT) -> RotationReport:
    """Rotate every password value to the current key (or, with `dry_run`, count what would be,
    listing the first `list_limit` (installation, field) rows it would change; None: all).

    Raises ConfigError for a keyring rotation cannot use and DatabaseError when the database
    refuses writes — both before any row is written. `workers` processes share the id range
    on PostgreSQL when the table is big enough to be worth it; `after_batch` (tests) implies one.
    """
    check_keyring(keyring, include_current=include_current)
    planner = RotationPlanner.from_registry(registry, keyring, include_current=include_current)
    options = {"batch_size": batch_size, "dry_run": dry_run, "max_retries": max_retries, "list_limit": list_limit}
    factory = installations.store_factory(database, read_only=dry_run)
    with factory() as store:
        if not dry_run:
            store.check_writable()
        parallel = workers > 1 and after_batch is None and isinstance(store, installations.PostgresStore)
        if parallel:
            bounds = store.id_bounds()
            parallel = bounds[1] - bounds[0] >= 2 * batch_size  # forking costs more than small tables take
        if not parallel:
            result = rewrite.run_rewrite(store, planner, progress=progress, after_batch=after_batch, **options)
    if parallel:
        result = rewrite.run_parallel(factory, planner, workers=workers, id_bounds=bounds, progress=progress, **options)
    keys = {key.label: key.fingerprint for key in keyring.keys}
    return RotationReport(result, keys, include_current)


def count_rows(database) -> int:
    """Rows a rotation will read (for a progress bar)."""
    with installations.store_factory(database, read_only=True)() as store:
        return store.count()


def _rebuild_planner(secret_keys, keyring, include_current):
    return RotationPlanner(secret_keys, keyring, include_current=include_current)


def _rows(n: int) -> str:
    return f"{n} row{'' if n == 1 else 's'}"

