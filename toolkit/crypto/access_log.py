"""The access trail: one JSON line per reveal of a secret, whoever asked and from where.

    {"time": "2025-01-31T09:14:03.512Z", "user": "alice", "installation_id": 42,
     "field": "apiKey", "key_fingerprint": "1a2b3c4d", "via": "dashboard"}

Where: `TOOLKIT_ACCESS_LOG`, else `access.log` in the user's state directory
(platformdirs, app name "installation-toolkit"). The file is created with mode 0600 and
its directory with 0700. The value is never written — not masked, not hashed.

Front ends call `record_reveal` BEFORE showing the value: if the trail cannot be written
it raises ConfigError and the value must not be shown.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
from pathlib import Path

from ..errors import ConfigError

VIA = ("cli", "dashboard", "notebook")
APP_NAME = "installation-toolkit"


def log_path(settings) -> Path:
    if getattr(settings, "access_log", None):
        return Path(settings.access_log)
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME)) / "access.log"


def record_reveal(settings, *, installation_id, field, key_fingerprint, via) -> dict:
    """Append one line for one revealed value; returns the entry written."""
    if via not in VIA:
        raise ValueError(f"via must be one of {', '.join(VIA)}")
    entry = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "user": _os_user(),
        "installation_id": installation_id,
        "field": field,
        "key_fingerprint": key_fingerprint,
        "via": via,
    }
    line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
    path = log_path(settings)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)  # an older or hand-made file: tighten it
            os.write(fd, line)  # one write: lines from concurrent processes do not interleave
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the access log {path}: {exc.strerror}",
            hint="set TOOLKIT_ACCESS_LOG to a writable file; nothing was revealed",
        ) from None
    return entry


def read_entries(settings) -> list[dict]:
    """Every entry of the access log, oldest first (empty when there is none yet)."""
    path = log_path(settings)
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers; the uid still says who
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else None
