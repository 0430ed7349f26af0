"""The committed notebooks hold no plaintext secret but the one revealed on purpose.

Decrypts every value of a fresh demo database (password fields, and any other value that
decrypts: a secret stored in the wrong field is still a secret), adds the password fields
stored as plaintext and every user's password hash, and greps each .ipynb — the raw file, so
sources, outputs and metadata all count — for each of them.

The one exception is identified precisely: notebook 02's cell `cfg.reveal("apiKey")` on
installation 4. Its plaintext must appear in that cell's output and nowhere else.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import nbformat
import pytest

from toolkit import demo
from toolkit.registry import load_registry

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
REVEALED_NOTEBOOK = "02-inspect-a-config.ipynb"
REVEALED_INSTALLATION, REVEALED_FIELD = 4, "apiKey"
REVEAL_SOURCE = f'cfg.reveal("{REVEALED_FIELD}")'
OPEN_SOURCE = f"cfg = tk.config({REVEALED_INSTALLATION})"
MIN_LENGTH = 8  # shorter "secrets" would match by chance; every demo secret is longer


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def secrets(demo_template) -> dict[str, str]:
    """plaintext -> where it is stored ("installation 4 apiKey", "user 12 password")."""
    path = demo_template  # a fresh demo database, built for this test session
    keyring = demo.demo_keyring()
    registry = load_registry(demo.DEMO_REGISTRY_PATH)
    found: dict[str, str] = {}
    connection = sqlite3.connect(path)
    try:
        for installation_id, app_id, text in connection.execute("SELECT id, app_id, config FROM app_installations"):
            config = json.loads(text) if text else {}
            if not isinstance(config, dict):
                continue
            app = registry.apps.get(app_id)
            password_fields = set(app.secret_keys) if app else set()
            for key, value in config.items():
                if not isinstance(value, str) or not value:
                    continue
                status = keyring.inspect(value)
                where = f"installation {installation_id} {key}"
                if status.plaintext is not None:
                    found[status.plaintext.decode("utf-8", errors="replace")] = where
                elif key in password_fields and status.kind == "plaintext":
                    found[value] = where  # a secret stored unencrypted is a secret all the same
        for user_id, password in connection.execute("SELECT id, password FROM users"):
            found[password] = f"user {user_id} password"
    finally:
        connection.close()
    return {plaintext: where for plaintext, where in found.items() if len(plaintext) >= MIN_LENGTH}


@pytest.fixture(scope="module")
def revealed(secrets) -> str:
    (plaintext,) = [p for p, where in secrets.items() if where == f"installation {REVEALED_INSTALLATION} {REVEALED_FIELD}"]
    return plaintext


def test_the_demo_has_secrets_to_look_for(secrets):
    # Every installation has at least one password field: thousands of values, 1500 hashes.
    assert len(secrets) > 3000 + 1500


def test_there_are_notebooks():
    names = [p.name for p in notebook_paths()]
    assert {"01-audit-walkthrough.ipynb", REVEALED_NOTEBOOK, "03-keys-and-rotation.ipynb"} <= set(names)


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_no_plaintext_secret_in_the_notebook(path, secrets, revealed):
    text = path.read_text(encoding="utf-8")
    leaked = {where for plaintext, where in secrets.items() if plaintext in text and plaintext != revealed}
    assert leaked == set(), f"{path.name} contains the plaintext of {sorted(leaked)[:5]}"
    if path.name != REVEALED_NOTEBOOK:
        assert revealed not in text


def test_the_one_revealed_value_is_exactly_the_explicit_reveal(revealed):
    notebook = nbformat.read(NOTEBOOKS / REVEALED_NOTEBOOK, as_version=4)
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    opens = [i for i, c in enumerate(cells) if OPEN_SOURCE in c.source]
    reveals = [i for i, c in enumerate(cells) if ".reveal(" in c.source]
    assert len(reveals) == 1 and cells[reveals[0]].source.strip() == REVEAL_SOURCE
    assert opens and opens[-1] < reveals[0]  # the config revealed from is installation 4's
    holding = [i for i, c in enumerate(cells) if revealed in json.dumps(c.get("outputs", []), ensure_ascii=False)]
    assert holding == reveals, "the revealed value must be in the reveal cell's output, and only there"
    assert all(revealed not in c.source for c in notebook.cells)


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebooks_are_committed_executed(path):
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "run notebooks/execute.py and commit"
    errors = [c.source.splitlines()[0] for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
