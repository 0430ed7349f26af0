"""Running the toolkit on a real pseudo-terminal (the child believes it is a terminal)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time


def run_in_pty(args, env: dict, cwd, timeout: float = 60.0) -> tuple[int, bytes]:
    """`python -m toolkit ARGS` with stdin, stdout and stderr on a pty's slave side; its exit
    code and every byte it wrote there."""
    master, slave = os.openpty()
    process = subprocess.Popen([sys.executable, "-m", "toolkit", *map(str, args)], stdin=slave, stdout=slave,
                               stderr=slave, env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    captured = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            captured += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return code, bytes(captured)
