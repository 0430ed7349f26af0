"""The access trail: a line per reveal, never the value, private to the user."""

from __future__ import annotations

import getpass
import json
import os
import stat
import subprocess
import sys

import pytest

from toolkit.crypto import Keyring
from toolkit.crypto import access_log
from toolkit.errors import ConfigError
from toolkit.settings import Settings

KEY = "ab" * 32


@pytest.fixture
def settings(tmp_path):
    return Settings(encryption_key=KEY, access_log=tmp_path / "state" / "nested" / "access.log")


def test_a_line_per_reveal_never_the_value(settings):
    keyring = Keyring.from_settings(settings)
    values = {"apiKey": "sk_live_AAAAsecret1", "webhookSecret": "whsec_BBBBsecret2"}
    for n, (field, plain) in enumerate(values.items(), start=1):
        decrypted = keyring.decrypt(keyring.encrypt(plain))
        access_log.record_reveal(settings, installation_id=n, field=field,
                                 key_fingerprint=decrypted.key.fingerprint, via="dashboard")
    access_log.record_reveal(settings, installation_id=None, field=None,
                             key_fingerprint=keyring.current.fingerprint, via="cli")
    raw = settings.access_log.read_text()
    assert raw.count("\n") == 3
    for plain in values.values():
        assert plain not in raw and plain[-6:] not in raw
    assert KEY not in raw
    entries = access_log.read_entries(settings)
    assert [(e["installation_id"], e["field"], e["via"]) for e in entries] == [
        (1, "apiKey", "dashboard"), (2, "webhookSecret", "dashboard"), (None, None, "cli")]
    for entry in entries:
        assert set(entry) == {"time", "user", "uid", "installation_id", "field", "key_fingerprint", "via"}
        assert entry["user"] == getpass.getuser() and entry["uid"] == os.getuid()
        assert entry["key_fingerprint"] == keyring.current.fingerprint
        assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_file_is_private(settings):
    access_log.record_reveal(settings, installation_id=1, field="f", key_fingerprint="00000000", via="notebook")
    assert stat.S_IMODE(os.stat(settings.access_log).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(settings.access_log.parent).st_mode) == 0o700


def test_a_loose_existing_file_is_tightened(tmp_path):
    path = tmp_path / "access.log"
    path.write_text("")
    os.chmod(path, 0o644)
    access_log.record_reveal(Settings(access_log=path), installation_id=1, field="f", key_fingerprint="x", via="cli")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_default_location_is_the_user_state_dir(tmp_path):
    # platformdirs honours XDG_STATE_HOME on Linux; run in a child so our environment is untouched.
    code = ("from toolkit.crypto import access_log; from toolkit.settings import Settings;"
            "print(access_log.log_path(Settings()))")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    if sys.platform.startswith("linux"):
        assert out.strip() == str(tmp_path / "installation-toolkit" / "access.log")


def test_unwritable_log_refuses(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = Settings(access_log=blocker / "access.log")  # a path under a regular file
    with pytest.raises(ConfigError) as caught:
        access_log.record_reveal(settings, installation_id=1, field="f", key_fingerprint="x", via="cli")
    assert "cannot write the access log" in caught.value.one_line()
    assert "TOOLKIT_ACCESS_LOG" in caught.value.one_line() and "nothing was revealed" in caught.value.one_line()


def test_via_is_checked(settings):
    with pytest.raises(ValueError):
        access_log.record_reveal(settings, installation_id=1, field="f", key_fingerprint="x", via="email")


def test_lines_are_json(settings):
    access_log.record_reveal(settings, installation_id=7, field="clé ✓", key_fingerprint="x", via="cli")
    (line,) = settings.access_log.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["field"] == "clé ✓"


# ---- a path from the environment is not trusted --------------------------------------------------

def record(path):
    return access_log.record_reveal(Settings(access_log=path), installation_id=1, field="f",
                                    key_fingerprint="x", via="cli")


def untouched(path):
    """What must not change: content, mode, mtime (lstat for the link, stat for its target)."""
    info = os.stat(path)
    content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
    return content, info.st_mode, info.st_mtime_ns, os.lstat(path).st_mtime_ns


def refused(path, why):
    with pytest.raises(ConfigError) as caught:
        record(path)
    line = caught.value.one_line()
    assert f"refusing the access log {path}" in line and why in line and "nothing was revealed" in line
    assert "\n" not in line


def test_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("precious\n")
    os.chmod(target, 0o644)
    link = tmp_path / "access.log"
    link.symlink_to(target)
    before = untouched(target)
    refused(link, "symbolic link")
    assert untouched(target) == before


def test_a_device_node_is_refused_and_never_re_moded(tmp_path):
    if os.getuid() != 0:
        pytest.skip("making a device node needs root")
    device = tmp_path / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
    os.chmod(device, 0o666)
    before = untouched(device)
    refused(device, "a character device")
    assert untouched(device) == before
    assert stat.S_IMODE(os.stat(device).st_mode) == 0o666


def test_dev_null_itself_is_refused():
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    mode = os.stat("/dev/null").st_mode
    refused(__import__("pathlib").Path("/dev/null"), "device")
    assert os.stat("/dev/null").st_mode == mode


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "access.log"
    os.mkfifo(fifo, 0o600)
    refused(fifo, "FIFO")  # nobody reads it: O_NONBLOCK makes the open fail, not wait
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        refused(fifo, "FIFO")  # somebody reads it: still not a regular file
        assert os.read(reader, 100) == b""  # nothing was written to it (and no writer is left)
    finally:
        os.close(reader)


def test_someone_elses_file_is_refused_and_keeps_its_mode(tmp_path):
    if os.getuid() != 0:
        pytest.skip("giving a file away needs root")
    path = tmp_path / "access.log"
    path.write_text("theirs\n")
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o644)
    before = untouched(path)
    refused(path, "belongs to uid 65534")
    assert untouched(path) == before


def test_show_reveal_fails_closed_on_a_symlinked_log(tmp_path, demo_settings):
    from test_demo import demo_plaintext

    target = tmp_path / "elsewhere.txt"
    target.write_text("")
    link = tmp_path / "link.log"
    link.symlink_to(target)
    plain = demo_plaintext(demo_settings, 4, "apiKey")
    env = {**os.environ, "TOOLKIT_DATA_DIR": str(demo_settings.data_dir), "TOOLKIT_ACCESS_LOG": str(link)}
    env.pop("DATABASE_URL", None)
    env.pop("ENCRYPTION_KEY", None)
    result = subprocess.run([sys.executable, "-m", "toolkit", "show", "4", "--reveal", "--field", "apiKey"], env=env,
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refusing the access log" in errors[0] and str(link) in errors[0]
    assert result.stdout == "" and target.read_text() == ""
    assert plain not in result.stderr


def test_decrypt_records_a_fingerprint_of_the_ciphertext_never_the_value(tmp_path):
    log = tmp_path / "access.log"
    env = {**os.environ, "ENCRYPTION_KEY": KEY, "TOOLKIT_ACCESS_LOG": str(log), "DATABASE_URL": "postgresql://u@127.0.0.1:1/x"}
    stored = Keyring.from_settings(Settings(encryption_key=KEY)).encrypt("hunter2-very-secret")
    result = subprocess.run([sys.executable, "-m", "toolkit", "decrypt"], input=stored + "\n", env=env,
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == "hunter2-very-secret"
    raw = log.read_text()
    assert "hunter2" not in raw and stored not in raw and stored.split(":")[2] not in raw
    (entry,) = [json.loads(line) for line in raw.splitlines()]
    assert entry["ciphertext_fingerprint"] == access_log.ciphertext_fingerprint(stored)
    assert len(entry["ciphertext_fingerprint"]) == 16 and entry["uid"] == os.getuid()
