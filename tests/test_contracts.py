"""Import contracts and one-owner rules, read from the source (DESIGN §3 and §8; harlequin
keeps its layers honest the same way with import-linter):

- crypto imports nothing from the database layer;
- the core (everything but the front ends tui/ and cli/) imports neither click, rich nor
  textual at module level (rich is only ever imported lazily, inside the hooks rich calls);
- the dashboard reaches the database only through its data source (tui/source.py): no
  database module, and no query function of browse/inspection, anywhere else in tui/;
- no audit code is spelled as a string literal outside the codes table (toolkit/codes.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from toolkit.codes import ALL_CODES

PACKAGE = Path(__file__).resolve().parent.parent / "toolkit"
FRONT_ENDS = ("tui", "cli")
# The schema's enum labels are facts of the app, not database access.
TUI_MAY_IMPORT_FROM_DB = {"APP_STATUSES", "ROLES"}
DATABASE_MODULES = ("toolkit.db", "toolkit.writes", "toolkit.keys", "toolkit.audit.engine", "toolkit.audit.store",
                    "toolkit.audit.incremental", "peewee", "psycopg2", "sqlite3")
# Modules of both query functions (their first parameter is `database`) and the types their
# results come in: the dashboard may use the types, never call the queries but through its source.
QUERY_MODULES = ("browse", "inspection")


def sources(under: str = "") -> list[Path]:
    return sorted((PACKAGE / under).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, top_level_only: bool = False):
    """(module imported, names imported from it, line) for each import in `path`, relative
    imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names = tuple(alias.name for alias in node.names)
            yield module, names, node.lineno
            for name in names:  # `from toolkit import browse` imports toolkit.browse
                yield f"{module}.{name}", (), node.lineno


def within(module: str, prefixes) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def test_the_walk_resolves_relative_imports():
    found = {module for module, _, _ in imports(PACKAGE / "audit" / "row_auditor.py")}
    assert {"toolkit.codes", "toolkit.crypto", "toolkit.audit"} <= found


@pytest.mark.parametrize("path", sources("crypto"), ids=lambda p: p.name)
def test_crypto_imports_nothing_from_the_database_layer(path):
    offenders = [(module, line) for module, _, line in imports(path) if within(module, DATABASE_MODULES)]
    assert offenders == []


@pytest.mark.parametrize("path", [p for p in sources() if p.relative_to(PACKAGE).parts[0] not in FRONT_ENDS],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_core_imports_no_terminal_or_cli_stack(path):
    offenders = [(module, line) for module, _, line in imports(path, top_level_only=True)
                 if within(module, ("click", "rich", "textual"))]
    assert offenders == []


@pytest.mark.parametrize("path", [p for p in sources("tui") if p.name != "source.py"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_dashboard_reaches_the_database_only_through_its_data_source(path):
    offenders = []
    for module, names, line in imports(path):
        if not within(module, DATABASE_MODULES):
            continue
        if module == "toolkit.db" and names and set(names) <= TUI_MAY_IMPORT_FROM_DB:
            continue
        if module.rpartition(".")[::2] in {("toolkit.db", name) for name in TUI_MAY_IMPORT_FROM_DB}:
            continue
        offenders.append((module, names, line))
    assert offenders == []


def query_functions(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)
            and node.args.args and node.args.args[0].arg == "database"}


@pytest.mark.parametrize("path", [p for p in sources("tui") if p.name != "source.py"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_dashboard_calls_no_query_but_through_its_data_source(path):
    queries = {module: query_functions(module) for module in QUERY_MODULES}
    assert queries["browse"] and queries["inspection"]  # the walk finds them at all
    offenders = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in queries:
            if node.attr in queries[node.value.id]:
                offenders.append(f"{node.value.id}.{node.attr} line {node.lineno}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] in queries:
            offenders += [f"{alias.name} line {node.lineno}" for alias in node.names
                          if alias.name in queries[node.module.split(".")[-1]]]
    assert offenders == []


def test_no_audit_code_is_spelled_outside_the_codes_table():
    codes = set(ALL_CODES)
    offenders = []
    for path in sources():
        if path == PACKAGE / "codes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in codes:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value}")
    assert offenders == []
