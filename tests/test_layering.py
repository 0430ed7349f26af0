"""The core never imports the terminal stack (DESIGN.md §3).

Checked in a fresh interpreter, since this test process may have Textual loaded already.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

# Everything but toolkit.tui and the dashboard: what scripts, CI and notebooks import.
CORE_MODULES = [
    "toolkit", "toolkit.errors", "toolkit.settings", "toolkit.db", "toolkit.context",
    "toolkit.migrate", "toolkit.schema_check", "toolkit.cli", "toolkit.cli._migrate",
    "toolkit.crypto", "toolkit.registry", "toolkit.writes.configs", "toolkit.audit", "toolkit.nb",
    "toolkit.inspection", "toolkit.browse", "toolkit.keys.rotation", "toolkit.keys.usage", "toolkit.writes.repair", "toolkit.demo",
]
TERMINAL_STACK = ("textual",)


def present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def loaded_after_importing(modules: list[str]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("module", [m for m in CORE_MODULES if present(m)])
def test_core_module_does_not_import_textual(module):
    loaded = loaded_after_importing([module])
    offenders = [name for name in loaded if name.split(".")[0] in TERMINAL_STACK]
    assert offenders == [], f"importing {module} pulls in {offenders[:5]}"


def test_all_core_modules_together_stay_light():
    modules = [m for m in CORE_MODULES if present(m)]
    assert "toolkit.migrate" in modules and "toolkit.cli" in modules
    loaded = set(loaded_after_importing(modules))
    assert "textual" not in loaded


def test_toolkit_help_does_not_import_textual():
    code = (
        "import sys\n"
        "from toolkit.cli import main\n"
        "code = main(['--help'])\n"
        "print('textual' in sys.modules, 'pandas' in sys.modules, code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # Listing the verbs imports none of them: no Textual, no pandas.
    assert result.stdout.strip().splitlines()[-1] == "False False 0"
