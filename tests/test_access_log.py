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
        assert set(entry) == {"time", "user", "installation_id", "field", "key_fingerprint", "via"}
        assert entry["user"] == getpass.getuser()
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
