"""`toolkit schema check`: does the live database have the schema the toolkit expects?

Three parts, each usable alone:

- `EXPECTED`: the app's schema (DESIGN.md §2, `migrations/0000_init.sql`) written in
  PostgreSQL's own vocabulary — what `format_type`, `pg_get_expr` and the catalogs print.
- `introspect(database)`: the same structure read from `pg_catalog`, in one read-only
  transaction (pooler-safe: `SET LOCAL` only).
- `compare(expected, live)`: a pure function, two schemas in, `Difference`s out, each a
  sentence an operator can act on ("column app_installations.config: type is text,
  expected jsonb").

Severity: `drift` is anything that can make the toolkit read or write wrongly (exit 1);
`note` is what differs but is harmless to it — an extra table, an extra nullable column, an
extra index. An extra NOT NULL column without a default is drift: the toolkit's inserts
would fail on it.
"""

from __future__ import annotations

import dataclasses

DRIFT = "drift"
NOTE = "note"

SCHEMA = "public"
SERIAL_DEFAULT = "nextval(<sequence>)"  # serial columns' default, whatever the sequence's name

_FK_ACTIONS = {"a": "no action", "r": "restrict", "c": "cascade", "n": "set null", "d": "set default"}


# ---- the shape of a schema ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: str  # as format_type() prints it
    not_null: bool
    default: str | None = None  # as pg_get_expr() prints it; SERIAL_DEFAULT for serial


@dataclasses.dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool
    method: str = "btree"
    predicate: str | None = None  # a partial index's WHERE


@dataclasses.dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str = "no action"
    on_update: str = "no action"


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    uniques: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (constraint name, columns)
    indexes: tuple[Index, ...] = ()  # plain indexes, not those backing a constraint
    foreign_keys: tuple[ForeignKey, ...] = ()

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclasses.dataclass(frozen=True)
class Schema:
    enums: dict[str, tuple[str, ...]]
    tables: dict[str, Table]


@dataclasses.dataclass(frozen=True)
class Difference:
    severity: str  # DRIFT or NOTE
    kind: str  # stable id, e.g. "column.type"
    subject: str  # "app_installations.config"
    message: str  # the whole sentence

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---- what the toolkit expects: the app's schema -------------------------------------------

_VARCHAR = "character varying"
_TIMESTAMP = "timestamp without time zone"

EXPECTED = Schema(
    enums={"role": ("admin", "customer"), "app_status": ("installed", "configured")},
    tables={
        "users": Table(
            "users",
            columns=(
                Column("id", "integer", True, SERIAL_DEFAULT),
                Column("name", f"{_VARCHAR}(255)", False),
                Column("email", f"{_VARCHAR}(255)", True),
                Column("password", f"{_VARCHAR}(255)", False),
                Column("role", "role", True, "'customer'::role"),
                Column("created_at", _TIMESTAMP, False, "now()"),
            ),
            primary_key=("id",),
            uniques=(("users_email_unique", ("email",)),),
        ),
        "app_installations": Table(
            "app_installations",
            columns=(
                Column("id", "integer", True, SERIAL_DEFAULT),
                Column("user_id", "integer", True),
                Column("app_id", f"{_VARCHAR}(100)", True),
                Column("status", "app_status", True, "'installed'::app_status"),
                Column("config", "jsonb", False, "'{}'::jsonb"),
                Column("installed_at", _TIMESTAMP, False, "now()"),
                Column("updated_at", _TIMESTAMP, False, "now()"),
            ),
            primary_key=("id",),
            indexes=(Index("app_installations_user_app_idx", ("user_id", "app_id"), unique=True),),
            foreign_keys=(
                ForeignKey(
                    "app_installations_user_id_users_id_fk", ("user_id",), "users", ("id",),
                    on_delete="cascade",
                ),
            ),
        ),
    },
)


# ---- comparing (pure) ---------------------------------------------------------------------

def compare(expected: Schema, live: Schema) -> list[Difference]:
    """Every difference between the two schemas, drift first, in a stable order."""
    found: list[Difference] = []
    found += _compare_enums(expected.enums, live.enums)
    for name, table in expected.tables.items():
        other = live.tables.get(name)
        if other is None:
            found.append(Difference(DRIFT, "table.missing", name, f"table {name} is missing"))
            continue
        found += _compare_table(table, other)
    for name in sorted(set(live.tables) - set(expected.tables)):
        found.append(Difference(NOTE, "table.extra", name, f"table {name} is not part of the app's schema (harmless: the toolkit ignores it)"))
    order = {DRIFT: 0, NOTE: 1}
    return sorted(found, key=lambda d: order[d.severity])


def _compare_enums(expected, live) -> list[Difference]:
    found = []
    for name, labels in expected.items():
        actual = live.get(name)
        if actual is None:
            found.append(Difference(DRIFT, "enum.missing", name, f"enum {name} is missing"))
            continue
        added = [label for label in actual if label not in labels]
        removed = [label for label in labels if label not in actual]
        if added:
            found.append(Difference(DRIFT, "enum.label-added", name, f"enum {name}: has {_labels(added)} that the app's schema does not define (expected {_labels(labels)})"))
        if removed:
            found.append(Difference(DRIFT, "enum.label-missing", name, f"enum {name}: {_labels(removed)} missing (expected {_labels(labels)})"))
        if not added and not removed and tuple(actual) != tuple(labels):
            found.append(Difference(DRIFT, "enum.order", name, f"enum {name}: labels in order {_labels(actual)}, expected {_labels(labels)}"))
    return found


def _labels(labels) -> str:
    return ", ".join(f"'{label}'" for label in labels)


def _compare_table(expected: Table, live: Table) -> list[Difference]:
    found = []
    table = expected.name
    for column in expected.columns:
        actual = live.column(column.name)
        subject = f"{table}.{column.name}"
        if actual is None:
            found.append(Difference(DRIFT, "column.missing", subject, f"column {subject} is missing"))
            continue
        if actual.type != column.type:
            found.append(Difference(DRIFT, "column.type", subject, f"column {subject}: type is {actual.type}, expected {column.type}"))
        if actual.not_null != column.not_null:
            is_, expected_ = ("NOT NULL", "nullable") if actual.not_null else ("nullable", "NOT NULL")
            found.append(Difference(DRIFT, "column.nullability", subject, f"column {subject}: is {is_}, expected {expected_}"))
        if actual.default != column.default:
            found.append(Difference(DRIFT, "column.default", subject, f"column {subject}: default is {_default(actual.default)}, expected {_default(column.default)}"))
    known = {c.name for c in expected.columns}
    for column in live.columns:
        if column.name in known:
            continue
        subject = f"{table}.{column.name}"
        if column.not_null and column.default is None:
            found.append(Difference(DRIFT, "column.extra-required", subject, f"column {subject} is not in the app's schema and is NOT NULL without a default: inserts that do not set it will fail"))
        else:
            found.append(Difference(NOTE, "column.extra", subject, f"column {subject} ({column.type}) is not in the app's schema (harmless: the toolkit neither reads nor writes it)"))

    if tuple(live.primary_key) != tuple(expected.primary_key):
        actual = f"({', '.join(live.primary_key)})" if live.primary_key else "missing"
        found.append(Difference(DRIFT, "primary-key", table, f"table {table}: primary key is {actual}, expected ({', '.join(expected.primary_key)})"))

    live_uniques = dict(live.uniques)
    for name, columns in expected.uniques:
        actual = live_uniques.get(name)
        if actual is None:
            found.append(Difference(DRIFT, "unique.missing", name, f"unique constraint {name} on {table} ({', '.join(columns)}) is missing"))
        elif tuple(actual) != tuple(columns):
            found.append(Difference(DRIFT, "unique.columns", name, f"unique constraint {name}: on ({', '.join(actual)}), expected ({', '.join(columns)})"))
    for name in sorted(set(live_uniques) - {n for n, _ in expected.uniques}):
        found.append(Difference(NOTE, "unique.extra", name, f"unique constraint {name} on {table} ({', '.join(live_uniques[name])}) is not in the app's schema"))

    live_indexes = {index.name: index for index in live.indexes}
    for index in expected.indexes:
        actual = live_indexes.get(index.name)
        if actual is None:
            kind = "unique index" if index.unique else "index"
            found.append(Difference(DRIFT, "index.missing", index.name, f"{kind} {index.name} on {table} ({', '.join(index.columns)}) is missing"))
            continue
        found += _compare_index(index, actual)
    for name in sorted(set(live_indexes) - {i.name for i in expected.indexes}):
        index = live_indexes[name]
        found.append(Difference(NOTE, "index.extra", name, f"index {name} on {table} ({', '.join(index.columns)}) is not in the app's schema (harmless)"))

    live_fks = {fk.name: fk for fk in live.foreign_keys}
    for fk in expected.foreign_keys:
        actual = live_fks.get(fk.name)
        if actual is None:
            found.append(Difference(DRIFT, "foreign-key.missing", fk.name, f"foreign key {fk.name} ({table}.{', '.join(fk.columns)} → {fk.ref_table}.{', '.join(fk.ref_columns)}) is missing"))
            continue
        found += _compare_fk(fk, actual)
    for name in sorted(set(live_fks) - {f.name for f in expected.foreign_keys}):
        fk = live_fks[name]
        found.append(Difference(NOTE, "foreign-key.extra", name, f"foreign key {name} ({table}.{', '.join(fk.columns)} → {fk.ref_table}) is not in the app's schema"))
    return found


def _default(value: str | None) -> str:
    if value is None:
        return "none"
    return "a serial sequence (nextval)" if value == SERIAL_DEFAULT else value


def _compare_index(expected: Index, live: Index) -> list[Difference]:
    found = []
    name = expected.name
    if live.columns != expected.columns:
        found.append(Difference(DRIFT, "index.columns", name, f"index {name}: on ({', '.join(live.columns)}), expected ({', '.join(expected.columns)})"))
    if live.unique != expected.unique:
        found.append(Difference(DRIFT, "index.unique", name, f"index {name}: is {'unique' if live.unique else 'not unique'}, expected {'unique' if expected.unique else 'not unique'}"))
    if live.method != expected.method:
        found.append(Difference(DRIFT, "index.method", name, f"index {name}: uses {live.method}, expected {expected.method}"))
    if live.predicate != expected.predicate:
        found.append(Difference(DRIFT, "index.predicate", name, f"index {name}: is partial (WHERE {_unwrap(live.predicate)}), expected a full index" if live.predicate else f"index {name}: is a full index, expected WHERE {expected.predicate}"))
    return found


def _unwrap(expression: str) -> str:
    # pg_get_expr wraps a predicate in parentheses; inside ours they only add noise.
    if expression.startswith("(") and expression.endswith(")"):
        return expression[1:-1]
    return expression


def _compare_fk(expected: ForeignKey, live: ForeignKey) -> list[Difference]:
    found = []
    name = expected.name
    target = lambda fk: f"({', '.join(fk.columns)}) → {fk.ref_table}({', '.join(fk.ref_columns)})"  # noqa: E731
    if (live.columns, live.ref_table, live.ref_columns) != (expected.columns, expected.ref_table, expected.ref_columns):
        found.append(Difference(DRIFT, "foreign-key.columns", name, f"foreign key {name}: is {target(live)}, expected {target(expected)}"))
    if live.on_delete != expected.on_delete:
        found.append(Difference(DRIFT, "foreign-key.on-delete", name, f"foreign key {name}: ON DELETE {live.on_delete.upper()}, expected ON DELETE {expected.on_delete.upper()}"))
    if live.on_update != expected.on_update:
        found.append(Difference(DRIFT, "foreign-key.on-update", name, f"foreign key {name}: ON UPDATE {live.on_update.upper()}, expected ON UPDATE {expected.on_update.upper()}"))
    return found


# ---- reading the live schema ---------------------------------------------------------------

_ENUMS_SQL = """
SELECT t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
JOIN pg_enum e ON e.enumtypid = t.oid
WHERE n.nspname = %s
GROUP BY t.typname
"""

_COLUMNS_SQL = """
SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
ORDER BY c.relname, a.attnum
"""

# Constraints with their column names in key order.
_CONSTRAINTS_SQL = """
SELECT rel.relname::text, con.conname::text, con.contype::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, pos)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.pos),
       ref.relname::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, pos)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.pos),
       con.confdeltype::text, con.confupdtype::text
FROM pg_constraint con
JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_namespace n ON n.oid = rel.relnamespace
LEFT JOIN pg_class ref ON ref.oid = con.confrelid
WHERE n.nspname = %s AND con.contype IN ('p', 'u', 'f')
ORDER BY rel.relname, con.conname
"""

# Indexes that do not back a constraint (those are checked as constraints). Expression
# columns show as their expression.
_INDEXES_SQL = """
SELECT t.relname::text, i.relname::text, ix.indisunique, am.amname::text,
       ARRAY(SELECT pg_get_indexdef(ix.indexrelid, k.pos::int, true)
             FROM generate_subscripts(ix.indkey, 1) WITH ORDINALITY k(sub, pos)
             WHERE k.pos <= ix.indnkeyatts ORDER BY k.pos),
       pg_get_expr(ix.indpred, ix.indrelid)
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = i.relam
WHERE n.nspname = %s
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = ix.indexrelid)
ORDER BY t.relname, i.relname
"""


def introspect(database, schema: str = SCHEMA) -> Schema:
    """Read `schema`'s enums, tables, constraints and indexes in one read-only transaction."""
    from .db import read_only, translate_errors

    with translate_errors(database), read_only(database):
        # Transaction-scoped (pooler-safe): types and defaults print unqualified, as expected.
        database.execute_sql(f"SET LOCAL search_path TO {schema}")
        enums = {name: tuple(labels) for name, labels in database.execute_sql(_ENUMS_SQL, (schema,)).fetchall()}
        columns: dict[str, list[Column]] = {}
        for table, name, type_, not_null, default, generated in database.execute_sql(_COLUMNS_SQL, (schema,)).fetchall():
            if default is not None and default.startswith("nextval("):
                default = SERIAL_DEFAULT
            if generated and default is None:
                default = "generated"  # identity/generated columns fill themselves
            columns.setdefault(table, []).append(Column(name, type_, bool(not_null), default))
        constraints = database.execute_sql(_CONSTRAINTS_SQL, (schema,)).fetchall()
        indexes = database.execute_sql(_INDEXES_SQL, (schema,)).fetchall()

    primary: dict[str, tuple[str, ...]] = {}
    uniques: dict[str, list] = {}
    fks: dict[str, list[ForeignKey]] = {}
    for table, name, kind, cols, ref_table, ref_cols, on_delete, on_update in constraints:
        if kind == "p":
            primary[table] = tuple(cols)
        elif kind == "u":
            uniques.setdefault(table, []).append((name, tuple(cols)))
        else:
            fks.setdefault(table, []).append(ForeignKey(
                name, tuple(cols), ref_table, tuple(ref_cols),
                _FK_ACTIONS.get(on_delete, on_delete), _FK_ACTIONS.get(on_update, on_update),
            ))
    plain: dict[str, list[Index]] = {}
    for table, name, unique, method, cols, predicate in indexes:
        plain.setdefault(table, []).append(Index(name, tuple(cols), bool(unique), method, predicate))

    tables = {
        name: Table(
            name, tuple(cols), primary.get(name, ()), tuple(uniques.get(name, ())),
            tuple(plain.get(name, ())), tuple(fks.get(name, ())),
        )
        for name, cols in columns.items()
    }
    return Schema(enums, tables)


@dataclasses.dataclass(frozen=True)
class Result:
    differences: tuple[Difference, ...]

    @property
    def drift(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.severity == DRIFT)

    @property
    def notes(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.severity == NOTE)

    @property
    def ok(self) -> bool:
        return not self.drift

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "drift": len(self.drift),
            "notes": len(self.notes),
            "differences": [d.as_dict() for d in self.differences],
        }


def journal_notes(database) -> list[Difference]:
    """Notes on drizzle's journal: a schema built without it makes `migrate` fail later.

    Not drift: the toolkit reads and writes fine; it is what `migrate` would do next.
    """
    from . import migrate

    state = migrate.status(database, migrate.read_folder(migrate.BUNDLED_FOLDER))
    subject = f"{migrate.MIGRATIONS_SCHEMA}.{migrate.MIGRATIONS_TABLE}"
    if not state.table_exists:
        return [Difference(NOTE, "migrations.untracked", subject, f"{subject} does not exist: the schema was not built by `drizzle-kit migrate` or `toolkit migrate` (drizzle-kit push?), so either would try to create it again")]
    if state.pending:
        tags = ", ".join(m.tag for m in state.pending)
        return [Difference(NOTE, "migrations.pending", subject, f"{subject} does not record {tags}: `toolkit migrate` would apply it")]
    return []


def check(database, expected: Schema = EXPECTED, *, journal: bool = True) -> Result:
    """Compare the live database with `expected` (the app's schema by default)."""
    found = compare(expected, introspect(database))
    if journal:
        found += journal_notes(database)
    return Result(tuple(found))
