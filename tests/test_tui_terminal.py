"""The dashboard in a real terminal: tmux at 80×24 runs `python -m toolkit dashboard` on the
demo database. The screen shows the Users, Audit and Quit hints; `/id:N` enter shows N.

Waits poll the pane until the text appears or a generous deadline passes (a bound, not a
timing assertion: the test fails only if the text never appears).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from conftest import unavailable

DEADLINE_SECONDS = 60


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        unavailable("tmux is not installed (scripts/test installs it)")
    session = f"toolkit-test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLKIT_", "ENCRYPTION_", "DATABASE_", "DIRECT_"))}
    env.update(TOOLKIT_DATA_DIR=str(tmp_path / "data"), TOOLKIT_ACCESS_LOG=str(tmp_path / "access.log"),
               TOOLKIT_CONFIG_DIR=str(tmp_path / "config"), TOOLKIT_EXPORT_DIR=str(tmp_path / "exports"),
               TERM="xterm-256color", PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    command = f"{sys.executable} -m toolkit dashboard"
    subprocess.run(["tmux", "-L", session, "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    "-c", str(tmp_path), command], check=True, env=env)

    def capture() -> str:
        return subprocess.run(["tmux", "-L", session, "capture-pane", "-p", "-t", session],
                              capture_output=True, text=True).stdout

    def wait_for(*texts) -> str:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            screen = capture()
            if all(text in screen for text in texts):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"never showed {texts!r}; the screen:\n{screen}")
            time.sleep(0.2)

    def keys(*sequence):
        subprocess.run(["tmux", "-L", session, "send-keys", "-t", session, *sequence], check=True)

    capture.wait_for, capture.keys = wait_for, keys
    yield capture
    subprocess.run(["tmux", "-L", session, "kill-server"], capture_output=True)


def test_at_80x24_the_screen_shows_the_navigation_hints_and_id_opens_an_installation(tmux):
    screen = tmux.wait_for("installations match", "Users", "Audit", "Quit")
    assert all(len(line) <= 80 for line in screen.splitlines())
    tmux.keys("/")
    tmux.wait_for("→ completes")
    tmux.keys("-l", "id:7")
    tmux.keys("Enter")
    tmux.wait_for("Installation 7 ", "User ", "Users", "Quit")  # its screen, the hints still there
    tmux.keys("q")
