"""The data layer: the app's schema as Peewee models and the ways to open a database."""

from .connection import (
    POOLER_PORT,
    DatabaseURL,
    ToolkitPostgres,
    bind,
    check_connection,
    describe,
    is_postgres,
    open_postgres,
    open_sqlite,
    parse_database_url,
    read_only,
    translate_errors,
)
from .models import (
    APP_STATUSES,
    MODELS,
    ROLES,
    USER_DISPLAY_FIELDS,
    AppInstallation,
    User,
    create_tables,
    database_proxy,
)

__all__ = [
    "APP_STATUSES", "MODELS", "POOLER_PORT", "ROLES", "USER_DISPLAY_FIELDS", "AppInstallation",
    "DatabaseURL", "ToolkitPostgres", "User", "bind", "check_connection", "create_tables",
    "database_proxy", "describe", "is_postgres", "open_postgres", "open_sqlite",
    "parse_database_url", "read_only", "translate_errors",
]
