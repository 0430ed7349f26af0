"""The dashboard's preferences: a small JSON file in the user config dir, loaded at start and
saved on change.

    <config dir>/dashboard.json     e.g. {"theme": "gruvbox"}

The config dir is TOOLKIT_CONFIG_DIR, else platformdirs' user config dir
(`~/.config/installation-toolkit` on Linux). Only known keys are kept; a missing, unreadable
or hand-broken file means the defaults (the dashboard must open anyway) and is rewritten on
the next change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import json_files

FILE_NAME = "dashboard.json"
KEYS = ("theme",)


def path_of(settings) -> Path:
    return settings.config_directory() / FILE_NAME


def load(settings) -> dict[str, str]:
    try:
        data = json_files.load(path_of(settings))  # bounded, nesting refused: a JSONFileError
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: data[key] for key in KEYS if isinstance(data.get(key), str)}


def save(settings, preferences: dict[str, str]) -> Path:
    """Write atomically (a crash never leaves half a file); OSError when the dir is not writable."""
    path = path_of(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({k: preferences[k] for k in KEYS if k in preferences}, indent=2) + "\n",
                         encoding="utf-8")
    os.replace(temporary, path)
    return path
