"""The access trail: one JSON line per reveal of a secret, whoever asked and from where.

    {"time": "2025-01-31T09:14:03.512Z", "user": "alice", "uid": 1000, "installation_id": 42,
     "field": "apiKey", "key_fingerprint": "1a2b3c4d", "via": "dashboard"}

`toolkit decrypt` knows no installation: its line carries `ciphertext_fingerprint`, the first
16 hex digits of the sha256 of the stored value (which row it was can be found again; the
plaintext cannot).

Where: `TOOLKIT_ACCESS_LOG`, else `access.log` in the user's state directory
(platformdirs, app name "installation-toolkit"). The file is created with mode 0600 and
its directory with 0700. The value is never written — not masked, not hashed.

The path comes from the environment, so it is not trusted: it is opened with O_NOFOLLOW (a
symlink is refused, not followed into its target) and O_NONBLOCK (a FIFO cannot stall the
reveal), then checked on the open descriptor: only a regular file owned by this user is
written, and only such a file is ever re-moded to 0600 — never a device node or someone
else's file.

Front ends call `record_reveal` BEFORE showing the value: if the trail cannot be written
it raises ConfigError and the value must not be shown.
"""

from __future__ import annotations

import datetime
import errno
import getpass
import hashlib
import json
import os
import stat
from pathlib import Path

from ..settings import APP_NAME
from ..errors import ConfigError

VIA = ("cli", "dashboard", "notebook")


def log_path(settings) -> Path:
    if getattr(settings, "access_log", None):
        return Path(settings.access_log)
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME)) / "access.log"


def ciphertext_fingerprint(stored: str) -> str:
    """Names a stored value without revealing anything about its plaintext."""
    return hashlib.sha256(stored.encode("utf-8")).hexdigest()[:16]


def record_reveal(settings, *, installation_id, field, key_fingerprint, via, ciphertext: str | None = None) -> dict:
    """Append one line for one revealed value; returns the entry written. `ciphertext`: the
    stored value, when no installation is known (only its fingerprint is written)."""
    if via not in VIA:
        raise ValueError(f"via must be one of {', '.join(VIA)}")
    entry = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "user": _os_user(),
        "uid": os.getuid() if hasattr(os, "getuid") else None,
        "installation_id": installation_id,
        "field": field,
        "key_fingerprint": key_fingerprint,
        "via": via,
    }
    if ciphertext is not None:
        entry["ciphertext_fingerprint"] = ciphertext_fingerprint(ciphertext)
    line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
    path = log_path(settings)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = _open_own_log(path)
        try:
            os.write(fd, line)  # one write: lines from concurrent processes do not interleave
        finally:
            os.close(fd)
    except _Refused as exc:
        raise ConfigError(f"refusing the access log {path}: {exc}",
                          hint="set TOOLKIT_ACCESS_LOG to a regular file of your own; nothing was revealed") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot write the access log {path}: {exc.strerror}",
            hint="set TOOLKIT_ACCESS_LOG to a writable file; nothing was revealed",
        ) from None
    return entry


class _Refused(Exception):
    """The access log path is not a regular file of ours."""


_OPEN_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))


def _open_own_log(path: Path) -> int:
    """An append descriptor on `path`, a regular file owned by this user, mode 0600."""
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Refused("it is a symbolic link") from None
        if exc.errno == errno.ENXIO:  # write-only open of a FIFO nobody reads, or of a socket
            raise _Refused("it is a FIFO or a socket, not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused(f"it is {_kind(info.st_mode)}, not a regular file")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise _Refused(f"it belongs to uid {info.st_uid}, not to you (uid {os.getuid()})")
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)  # our own older or hand-made file: tighten it
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a special file"


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
