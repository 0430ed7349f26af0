"""installation-toolkit: audit, inspect, encrypt and rotate the app's installation configs.

The Python API scripts use. Names load on first use, so `import toolkit` stays cheap and
never pulls in Textual, pandas or matplotlib.

    >>> import toolkit
    >>> context = toolkit.Context()                      # settings from env / .env.local / .env
    >>> report = toolkit.run_audit(context.database, context.registry, context.keyring)
    >>> report.exit_code("error"), report.render("json")
    >>> service = toolkit.ConfigService(context.database, context.registry, context.keyring)
    >>> service.update_config(42, {"apiKey": "sk_live_…"})  # validated, encrypted, compare-and-swap
"""

from __future__ import annotations

import importlib

# public name -> module that defines it
_EXPORTS = {
    "Context": "toolkit.context",
    "Settings": "toolkit.settings",
    "load_settings": "toolkit.settings",
    "ExitCode": "toolkit.errors",
    "ToolkitError": "toolkit.errors",
    "ConfigError": "toolkit.errors",
    "UsageError": "toolkit.errors",
    "RegistryError": "toolkit.errors",
    "CryptoError": "toolkit.errors",
    "MalformedCiphertext": "toolkit.errors",
    "UndecryptableError": "toolkit.errors",
    "AlreadyEncrypted": "toolkit.errors",
    "ConfigValidationError": "toolkit.errors",
    "ConflictError": "toolkit.errors",
    "DatabaseError": "toolkit.errors",
    "NotFound": "toolkit.errors",
    "Keyring": "toolkit.crypto",
    "Secret": "toolkit.crypto",
    "load_registry": "toolkit.registry",
    "ConfigService": "toolkit.writes.configs",
    "run_audit": "toolkit.audit",
    "Filters": "toolkit.audit",
    "Report": "toolkit.audit",
    "Finding": "toolkit.audit",
    "load_installation": "toolkit.inspection",
    "reveal": "toolkit.inspection",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
