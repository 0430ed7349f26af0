"""The per-installation routine: the checks of `checks.py`, composed once per run.

`Auditor` is compiled from the registry, the keyring and the selected codes before any row
is read (and, on PostgreSQL, before worker processes fork, so each inherits it). Per row it
does the least that answers every selected code: one JSON parse, the registry's one-pass
config check, one `keyring.inspect` per stored secret (the same result answers plaintext,
malformed, undecryptable, stale-key and nonce reuse), `check_value` (the registry's type
rules) once per distinct value of a field, and nothing on the clean path that allocates a
finding — all in one pass over the config's keys. Findings leave as plain tuples
`(code, installation_id, user_id, app_id, field, message)`; the engine turns them into
`Finding`s once, at the end.
"""

from __future__ import annotations

from typing import NamedTuple

from orjson import JSONDecodeError
from orjson import loads as _loads

from cryptography.exceptions import InvalidTag

from ..codes import (
    ALL_CODES, APP_UNKNOWN, CONFIG_READING_CODES, DECRYPTING_CODES, PLAIN_SCANNING_CODES,
    CONFIG_NON_STRING, CONFIG_NOT_OBJECT, FIELD_INVALID, FIELD_MISSING,
    FIELD_UNEXPECTED_CIPHERTEXT, FIELD_UNKNOWN, INSTALLATION_TIMESTAMPS, SECRET_STALE_KEY,
    STATUS_NOT_CONFIGURED,
)
from ..crypto import ValueStatus, split_strict
from ..crypto._keyring import CURRENT
from . import checks
from .nonces import _PAD as _IV_PAD
from .nonces import _SHORT_IV, IVLog

_STATUS = {b"installed": "installed", b"configured": "configured", "installed": "installed", "configured": "configured"}


SECRET, CHECKED, FREE = 0, 1, 2  # how a field's values are judged
_MISS = object()
_new_status = tuple.__new__  # a ValueStatus without NamedTuple.__new__'s Python call
_ABSENT = object()
TICK_MASK = 8191  # progress every 8192 rows
# check_value results remembered per field: select options, ports, hosts, and the same email
# on a user's neighbouring installations. A full cache is emptied (it keeps what is recent).
CACHE_LIMIT = 4096


class FieldRule(NamedTuple):
    kind: int  # SECRET (password), CHECKED (check_value has a rule), FREE (no rule at all)
    slot: int  # numbers (app_id, key) in IV traces
    definition: object  # FieldDefinition
    cache: dict  # value -> check_value result; check_value is pure, values repeat a lot


class AppPlan(NamedTuple):
    app_id: str
    rules: dict  # key -> FieldRule
    known: frozenset  # the app's field keys
    secrets: tuple  # (key, slot, definition if it has a pattern else None) of its password fields
    plain: tuple  # (key, kind, slot, definition, cache) of its other fields
    required_keys: tuple
    required_set: frozenset


class Auditor:
    """Audits installations one at a time; collects finding tuples and IV traces."""

    def __init__(self, registry, keyring, codes=ALL_CODES, check_value=None):
        if check_value is None:
            from ..registry import check_value
        self.check_value = check_value
        self.codes = frozenset(codes)
        self.inspect = keyring.inspect
        self._decrypt_current = keyring.current_decrypt
        self._open_previous = keyring.open_previous
        self.key_count = len(keyring)
        # What the selected checks need, as the codes table says (toolkit.codes).
        self.reads_config = bool(self.codes & CONFIG_READING_CODES)
        self.decrypts = bool(self.codes & DECRYPTING_CODES)
        self.scans_plain = bool(self.codes & PLAIN_SCANNING_CODES)
        self.checks_status = STATUS_NOT_CONFIGURED in self.codes
        self.slots: list[tuple[str, str]] = []  # slot -> (app_id, field), for IV traces
        self.plans: dict = {}
        self._caches: dict = {}  # (type, pattern, options) -> check_value cache
        for app_id, app in registry.apps.items():
            plan = self._compile(app_id, app)
            self.plans[app_id] = plan
            # COPY hands us bytes: look the plan up without decoding every row's app_id.
            self.plans[app_id.encode("utf-8")] = plan
        self.reset()

    def __getstate__(self):
        # For worker processes started by forkserver: rules and keyring, not the collected state.
        state = dict(self.__dict__)
        for name in ("findings", "ivs", "_trace", "_iv_extend", "_meta_append", "_row_append",
                     "_pending", "rows", "on_tick", "_decrypt_current", "_open_previous"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        keyring = self.inspect.__self__  # AESGCM does not pickle: bind its methods again
        self._decrypt_current, self._open_previous = keyring.current_decrypt, keyring.open_previous
        self.reset()

    def reset(self) -> None:
        """Start collecting afresh (a worker does, per chunk)."""
        self.findings: list[tuple] = []
        self.ivs = IVLog()
        self._trace = self.ivs.adder()
        self._iv_extend, self._meta_append, self._row_append = (
            self.ivs.ivs.extend, self.ivs.meta.append, self.ivs.rows.append)
        self._pending = b""
        self.rows = 0
        self.on_tick = None  # called with the row count every TICK_MASK + 1 rows

    def _cache_for(self, field) -> dict:
        """One check_value cache per rule, shared by the fields (of any app) that have the same
        one: check_value reads only the type, the pattern and the options, and a user's
        installations of different apps often hold the same email or host."""
        rule = (field.type, field.pattern, tuple(option.value for option in field.options))
        return self._caches.setdefault(rule, {})

    def _compile(self, app_id, app) -> AppPlan:
        rules = {}
        for field in app.fields:
            self.slots.append((app_id, field.key))
            if field.is_secret:
                kind = SECRET
            elif field.type in ("text", "textarea") and field.pattern is None:
                # check_value has no rule for these (registry docs); skipping the call is the
                # only shortcut taken, and test_audit_checks holds it to check_value itself.
                kind = FREE
            else:
                kind = CHECKED
            rules[field.key] = FieldRule(kind, len(self.slots) - 1, field, self._cache_for(field))
        # A password field with a pattern has its decrypted value checked against it.
        secrets = tuple((key, rule.slot, rule.definition if rule.definition.pattern is not None else None)
                        for key, rule in rules.items() if rule.kind == SECRET)
        plain = tuple((key, *rule) for key, rule in rules.items() if rule.kind != SECRET)
        return AppPlan(app_id, rules, frozenset(rules), secrets, plain,
                       tuple(app.required_keys), frozenset(app.required_keys))

    # ---- the hot path ------------------------------------------------------------------
    def write(self, line: bytes) -> None:
        """One row of `COPY (SELECT id, user_id, app_id, status, timestamps, config) TO STDOUT`.

        The auditor can be the file psycopg2's copy_expert writes to: libpq hands out COPY data
        one whole row per call (PQgetCopyData), so each write() is one line. Anything else
        (several rows, an escaped field) takes the careful path. A worker rather collects the
        lines and hands them over in batches (`write_many`): one Python call per batch."""
        self._run((line,), False)

    def write_many(self, lines) -> None:
        """COPY rows as `write` takes them, many at once."""
        self._run(lines, False)

    def audit(self, installation_id, user_id, app_id, status, timestamps, raw_config) -> None:
        """One installation. Ids and app_id may be bytes (COPY) or str/int (SQLite)."""
        self._run(((installation_id, user_id, app_id, status, timestamps, raw_config),), True)

    audit_copy_line = write

    def _run(self, items, split: bool) -> None:
        """Audit `items`: COPY lines, or (`split`) rows already split into their six fields.
        One loop for every entry point, its attributes bound to locals once per call."""
        findings_append = self.findings.append
        plans_get = self.plans.get
        reads_config = self.reads_config
        inspect = self.inspect if self.decrypts else None
        decrypt = self._decrypt_current
        open_previous = self._open_previous
        strict = split_strict
        scans_plain = self.scans_plain
        checks_status = self.checks_status
        iv_extend, meta_append, row_append = self._iv_extend, self._meta_append, self._row_append
        key_count = self.key_count
        check_value = self.check_value
        rows = self.rows
        for fields in items:
            if not split:
                line = fields
                fields = line[:-1].split(b"\t")
                # find(), not `in`: bytes.__contains__ first tries the needle as an int and
                # raises and clears a TypeError, every row.
                if len(fields) != 6 or line[-1] != 10 or line.find(b"\\") >= 0:  # 10: a whole row ends with \n
                    self.rows = rows
                    self._write_careful(line)  # audits through _run: rows counted there
                    rows = self.rows
                    continue
            installation_id, user_id, app_id, status, timestamps, raw_config = fields
            rows += 1
            if not rows & TICK_MASK and self.on_tick is not None:
                self.rows = rows
                self.on_tick(rows)
            if timestamps:
                findings_append((INSTALLATION_TIMESTAMPS, installation_id, user_id, _str(app_id), None,
                                 checks.timestamps_problem(_str(timestamps))))
            plan = plans_get(app_id)
            if plan is None:
                app_id = checks.safe_name(_str(app_id))
                findings_append((APP_UNKNOWN, installation_id, user_id, app_id, None,
                                 f"app '{app_id}' is not in the registry"))
                if inspect is not None:  # its secrets still count: an old key may be all that reads them
                    config = checks.load_config(raw_config)
                    if config.__class__ is dict:
                        for key, value in config.items():
                            self._stale_elsewhere(installation_id, user_id, app_id, key, value)
                continue
            if not reads_config:
                continue
            try:
                config = _loads(raw_config)  # bytes or str; NULL (None) and the rest fall through
            except (JSONDecodeError, TypeError):
                config = checks.load_config(raw_config)
            if config.__class__ is not dict:
                config = checks.load_config(raw_config)  # NULL / JSON null -> {}; else what it is
                if config.__class__ is not dict:
                    findings_append((CONFIG_NOT_OBJECT, installation_id, user_id, plan.app_id, None,
                                     checks.config_not_object(config)))
                    continue
            status = _STATUS.get(status, status)
            bad = None  # fields with a finding (status.not-configured needs them)
            if not config.keys() <= plan.known:  # one C-level test; unknown keys are rare
                bad = self._unknown_keys(plan, installation_id, user_id, config)
            row = None  # installation_id << 32 | user_id, once a value is traced
            get = config.get
            # The registry's fields, secrets first. A value is absent (None), not a string
            # (reported), "" (not set) or checked.
            blank = None  # password fields whose value decrypts to "" (set, but empty)
            empty = False  # a field of the registry holds "" or a non-string (field.missing looks)
            for key, slot, patterned in plan.secrets:
                value = get(key, _ABSENT)
                if value.__class__ is not str:
                    if value is not _ABSENT:  # JSON null included
                        bad = self._non_string(plan, installation_id, user_id, key, value, bad)
                        empty = True
                    continue
                if not value:
                    empty = True
                    continue
                if inspect is None:
                    continue
                found = None  # a ValueStatus, built only off the clean path
                parts = strict(value)
                if parts is None or decrypt is None:
                    found = inspect(value)  # plaintext, malformed, or (no key at all) undecryptable
                    key_index, iv, plaintext = found.key_index, found.iv, found.plaintext
                else:
                    # Keyring.inspect's common case inline (a call per value costs): a strict
                    # value, either IV length, the current key first, then the previous ones.
                    iv, sealed = parts
                    try:
                        plaintext = decrypt(iv, sealed, None)
                        key_index = 0
                    except InvalidTag:
                        found = open_previous(iv, sealed)
                        key_index, plaintext = found.key_index, found.plaintext
                if key_index is not None:
                    if row is None:
                        row = int(installation_id) << 32 | int(user_id)
                    # IVLog's layout inline (see IVLog.adder): three C calls instead of a Python one.
                    if len(iv) == 16:
                        iv_extend(iv)
                        meta_append(key_index << 24 | slot)
                    else:
                        iv_extend(iv + _IV_PAD)
                        meta_append(key_index << 24 | _SHORT_IV | slot)
                    row_append(row)
                    if key_index == 0 and patterned is None and plaintext and plaintext.isascii():
                        continue  # the clean path: current key, a non-empty ASCII value, no pattern
                    if not plaintext:
                        blank = _add(blank, key)  # encrypt(""): counts as not set
                    if found is None:
                        found = _new_status(ValueStatus, (CURRENT, 0, plaintext, iv, None))
                for code, message in checks.secret_problems(found, key_count):
                    findings_append((code, installation_id, user_id, plan.app_id, key, message))
                    bad = _add(bad, key)
                if patterned is not None and key_index is not None:
                    message = checks.decrypted_value_problem(check_value, patterned, found.plaintext)
                    if message is not None:
                        findings_append((FIELD_INVALID, installation_id, user_id, plan.app_id, key, message))
                        bad = _add(bad, key)
            for key, kind, slot, definition, cache in plan.plain:
                value = get(key, _ABSENT)
                if value.__class__ is not str:
                    if value is not _ABSENT:  # JSON null included
                        bad = self._non_string(plan, installation_id, user_id, key, value, bad)
                        empty = True
                    continue
                if not value:
                    empty = True
                    continue
                if kind == CHECKED:
                    message = cache.get(value, _MISS)
                    if message is _MISS:
                        # Was it encrypted by mistake? Asked only of values not in the cache: a
                        # value is cached only once it has passed this (a pure test, like
                        # check_value), so a cached value would pass again.
                        if scans_plain and strict(value) is not None:
                            traced = self._ciphertext(plan, installation_id, user_id, key, slot, value, row)
                            if traced is not None:
                                row, bad = traced, _add(bad, key)
                                continue
                        message = check_value(definition, value)
                        if len(cache) >= CACHE_LIMIT:
                            cache.clear()
                        cache[value] = message
                    if message is not None:
                        findings_append((FIELD_INVALID, installation_id, user_id, plan.app_id, key, message))
                        bad = _add(bad, key)
                elif scans_plain and strict(value) is not None:  # a FREE field
                    traced = self._ciphertext(plan, installation_id, user_id, key, slot, value, row)
                    if traced is not None:
                        row, bad = traced, _add(bad, key)
            if status == "configured":
                # A required key is absent, None, "" or decrypts to "" only if one of these says
                # so (the loops above saw every registry field): the loop runs when something is amiss.
                if blank or empty or not plan.required_set <= config.keys():
                    for key in plan.required_keys:
                        value = get(key)
                        if value is None or value == "" or (blank and key in blank):
                            findings_append((FIELD_MISSING, installation_id, user_id, plan.app_id, key,
                                             checks.missing_message(value)))
            elif checks_status and status == "installed":
                message = checks.not_configured(status, plan.required_keys, config,
                                                (bad or set()) | (blank or set()))
                if message is not None:
                    findings_append((STATUS_NOT_CONFIGURED, installation_id, user_id, plan.app_id, None,
                                     message))
        self.rows = rows

    def _write_careful(self, data: bytes) -> None:
        data = self._pending + bytes(data)
        *lines, self._pending = data.split(b"\n")
        self._run([[_unescape_copy(field) for field in line.split(b"\t")] for line in lines], True)

    def _ciphertext(self, plan, installation_id, user_id, key, slot, value, row):
        """field.unexpected-ciphertext (and secret.stale-key) for a non-password value that
        decrypts under the keyring: traces its IV and returns the row number (computed if
        `row` is None); None if it is not a ciphertext."""
        found = self.inspect(value)
        message = checks.unexpected_ciphertext(found)
        if message is None:
            return None
        if row is None:
            row = int(installation_id) << 32 | int(user_id)
        self._trace(found.iv, found.key_index, slot, row)
        self.findings.append((FIELD_UNEXPECTED_CIPHERTEXT, installation_id, user_id, plan.app_id, key, message))
        self._stale(found, installation_id, user_id, plan.app_id, key)
        return row

    def _unknown_keys(self, plan, installation_id, user_id, config):
        """field.unknown (and config.non-string, secret.stale-key) for keys the registry does not define."""
        bad = set()
        for key, value in config.items():
            if key in plan.known:
                continue
            name = checks.safe_name(key)
            self.findings.append((FIELD_UNKNOWN, installation_id, user_id, plan.app_id, name,
                                  f"not a field of app '{plan.app_id}'"))
            if value.__class__ is not str:
                self.findings.append((CONFIG_NON_STRING, installation_id, user_id, plan.app_id, name,
                                      checks.config_non_string(value)))
            elif self.decrypts:
                self._stale_elsewhere(installation_id, user_id, plan.app_id, name, value)
            bad.add(key)
        return bad

    def _stale_elsewhere(self, installation_id, user_id, app_id, key, value) -> None:
        """secret.stale-key for a value outside the registry's fields (an unknown field, an
        unknown app): a ciphertext is a secret wherever it sits (DESIGN §4.4). Its IV is not
        traced: nonce reuse compares the registry's fields (slots are numbered per field)."""
        if value.__class__ is str and split_strict(value) is not None:
            self._stale(self.inspect(value), installation_id, user_id, app_id, checks.safe_name(key))

    def _stale(self, found, installation_id, user_id, app_id, key) -> None:
        message = checks.stale_key_problem(found)
        if message is not None:
            self.findings.append((SECRET_STALE_KEY, installation_id, user_id, app_id, key, message))

    def _non_string(self, plan, installation_id, user_id, key, value, bad):
        self.findings.append((CONFIG_NON_STRING, installation_id, user_id, plan.app_id, key,
                              checks.config_non_string(value)))
        return _add(bad, key)


def _add(bad, key):
    if bad is None:
        return {key}
    bad.add(key)
    return bad


def _str(value) -> str:
    return value.decode("utf-8", "replace") if value.__class__ is bytes else value


_COPY_ESCAPES = {
    b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v", b"\\": b"\\",
}


def _unescape_copy(field: bytes):
    r"""COPY text format: `\N` is NULL; `\\`, `\n`, `\t`… and octal/hex escapes are bytes."""
    if field == b"\\N":
        return None
    if b"\\" not in field:
        return field
    out = bytearray()
    i, n = 0, len(field)
    while i < n:
        j = field.find(b"\\", i)
        if j < 0 or j == n - 1:
            out += field[i:]
            break
        out += field[i:j]
        char = field[j + 1:j + 2]
        if char in _COPY_ESCAPES:
            out += _COPY_ESCAPES[char]
            i = j + 2
        elif char.isdigit():
            digits = field[j + 1:j + 4]
            k = 0
            while k < len(digits) and digits[k:k + 1] in b"01234567":
                k += 1
            out.append(int(digits[:k], 8) & 0xFF)
            i = j + 1 + k
        elif char == b"x" and field[j + 2:j + 3] and field[j + 2:j + 3] in b"0123456789abcdefABCDEF":
            digits = field[j + 2:j + 4]
            if not all(d in b"0123456789abcdefABCDEF" for d in digits[1:2]):
                digits = digits[:1]
            out.append(int(digits, 16))
            i = j + 2 + len(digits)
        else:  # an unknown escape stands for the character itself
            out += char
            i = j + 2
    return bytes(out)
