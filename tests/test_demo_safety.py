"""The demo database never meets a real key, and `nb.connect(fresh=True)` leaves nothing behind,
even when the kernel is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from toolkit import demo
from toolkit.context import Context
from toolkit.crypto import Keyring
from toolkit.errors import ToolkitError
from toolkit.settings import Settings

from conftest import ROOT

REAL_KEY = "5e" * 32


def test_the_demo_database_uses_demo_keys_only_and_says_so(demo_settings):
    lines = []
    settings = Settings(data_dir=demo_settings.data_dir, encryption_key=REAL_KEY,
                        encryption_key_previous=("6f" * 32,), access_log=demo_settings.access_log)
    context = Context(settings, announce=lines.append)
    keyring = context.keyring
    assert keyring.is_demo
    assert {k.material for k in keyring.keys} == {bytes.fromhex(k) for k in demo.DEMO_KEYS}
    assert sum("demo keys only" in line and "ENCRYPTION_KEY" in line for line in lines) == 1
    assert REAL_KEY not in " ".join(lines)
    # Writes on the demo database are sealed with the demo key, never the real one.
    context.database  # noqa: B018
    installation = context.configs.update_config(4, {"apiKey": "sk_live_written_in_demo"})
    stored = installation.config["apiKey"]
    assert keyring.decrypt(stored).key.is_current
    real = Keyring.from_settings(Settings(encryption_key=REAL_KEY))
    with pytest.raises(ToolkitError):
        real.decrypt(stored)
    context.close()


def clean_env(**env) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLKIT_", "ENCRYPTION_", "DATABASE_"))}
    environment.update(PYTHONPATH=str(ROOT), **env)
    return environment


def cli(args, settings, input=None, **env):
    environment = clean_env(TOOLKIT_DATA_DIR=str(settings.data_dir), TOOLKIT_ACCESS_LOG=str(settings.access_log), **env)
    return subprocess.run([sys.executable, "-m", "toolkit", *args], capture_output=True, text=True, input=input,
                          env=environment, cwd=settings.data_dir, timeout=60)


def test_show_reveal_on_the_demo_ignores_a_real_key(demo_settings):
    result = cli(["show", "4", "--reveal", "--field", "apiKey", "--json"], demo_settings, ENCRYPTION_KEY=REAL_KEY)
    assert result.returncode == 0, result.stderr
    assert sum("demo keys only" in line for line in result.stderr.splitlines()) == 1
    field = json.loads(result.stdout)["config"]["apiKey"]
    assert field.get("revealed") is True  # the demo key opened it: the real key was never tried


def test_decrypt_with_no_database_still_uses_the_real_key(demo_settings):
    """`decrypt`/`encrypt` touch no database: the key in the environment is the one meant."""
    stored = Keyring.from_settings(Settings(encryption_key=REAL_KEY)).encrypt("from-production")
    result = cli(["decrypt"], demo_settings, input=stored, ENCRYPTION_KEY=REAL_KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == "from-production"
    assert "demo keys only" not in result.stderr


# ---- nb.connect(fresh=True) --------------------------------------------------------------------

KILLED = """
import os, signal, sys
from toolkit import nb
tk = nb.connect(fresh=True)
print(tk.scratch, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""

CLEAN = """
from toolkit import nb
tk = nb.connect(fresh=True)
print(tk.scratch, flush=True)
tk.overview()
"""


def run_python(code, cache_home):
    env = clean_env(XDG_CACHE_HOME=str(cache_home))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_a_killed_kernel_leaves_its_copy_for_the_next_connect_to_remove(tmp_path):
    from pathlib import Path

    killed = run_python(KILLED, tmp_path)
    assert killed.returncode == -signal.SIGKILL
    left = Path(killed.stdout.strip())
    assert left.is_dir() and (left / "demo.sqlite3").is_file()
    assert left.is_relative_to(tmp_path)  # the per-user cache dir, not /tmp at large

    clean = run_python(CLEAN, tmp_path)
    assert clean.returncode == 0, clean.stderr
    own = Path(clean.stdout.strip())
    assert not left.exists()  # removed by the next connect
    assert not own.exists()  # and its own copy went away with it at exit
    assert list((tmp_path / "installation-toolkit" / "fresh").iterdir()) == []


def test_a_live_sessions_copy_is_never_removed(tmp_path, monkeypatch):
    from toolkit import nb
    from toolkit.nb import _session

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    session = nb.connect(fresh=True)
    try:
        assert _session.remove_stale_scratch() == []
        assert session.scratch.is_dir()
    finally:
        session.close()
