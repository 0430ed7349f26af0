"""The app's two tables, exactly as its Drizzle schema declares them.

The same models serve PostgreSQL (created by the drizzle migration in `migrations/`) and the
embedded SQLite demo database (created by `create_tables`). Models are bound to
`database_proxy`; `toolkit.db.connect()` initialises it.
"""

from __future__ import annotations

from peewee import (
    SQL,
    AutoField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    Field,
    ForeignKeyField,
    IntegerField,
    JSONField,
    Model,
)

from .json_values import TOO_DEEP, Unreadable, decode_config

database_proxy = DatabaseProxy()

ROLES = ("admin", "customer")
APP_STATUSES = ("installed", "configured")


class _EnumField(Field):
    """A PostgreSQL enum column; Peewee has no native enum (DESIGN.md §6)."""

    labels: tuple[str, ...] = ()

    def db_value(self, value):
        if value is not None and value not in self.labels:
            raise ValueError(f"{self.column_name} must be one of {', '.join(self.labels)}")
        return value


class RoleField(_EnumField):
    field_type = "role"
    labels = ROLES


class AppStatusField(_EnumField):
    field_type = "app_status"
    labels = APP_STATUSES


class ConfigField(JSONField):
    """jsonb / JSON text; a value too deep or not JSON at all reads as `Unreadable`."""

    def __init__(self, **kwargs):
        super().__init__(loads=decode_config, **kwargs)

    def python_value(self, value):
        try:
            return super().python_value(value)
        except RecursionError:  # psycopg2 may have parsed jsonb already, or not
            return Unreadable(TOO_DEEP)


class BaseModel(Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class User(BaseModel):
    id = AutoField()
    name = CharField(max_length=255, null=True)
    email = CharField(max_length=255, constraints=[SQL('CONSTRAINT "users_email_unique" UNIQUE')])
    # In the model so the schema matches; never selected for display (see DISPLAY_COLUMNS).
    password = CharField(max_length=255, null=True)
    role = RoleField(default="customer", constraints=[SQL("DEFAULT 'customer'")])
    created_at = DateTimeField(null=True, constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])

    class Meta:
        table_name = "users"

    def __repr__(self):
        return f"<User id={self.id} email={self.email!r} role={self.role}>"


# What any front end may show of a user: everything but the password hash.
USER_DISPLAY_FIELDS = (User.id, User.name, User.email, User.role, User.created_at)


class AppInstallation(BaseModel):
    id = AutoField()
    # No separate index: the unique (user_id, app_id) index serves lookups by user.
    user = ForeignKeyField(
        User, column_name="user_id", on_delete="CASCADE", backref="installations", index=False
    )
    app_id = CharField(max_length=100)
    status = AppStatusField(default="installed", constraints=[SQL("DEFAULT 'installed'")])
    config = ConfigField(null=True, default=dict, constraints=[SQL("DEFAULT '{}'")])
    installed_at = DateTimeField(null=True, constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])
    updated_at = DateTimeField(null=True, constraints=[SQL("DEFAULT CURRENT_TIMESTAMP")])

    class Meta:
        table_name = "app_installations"

    def __repr__(self):
        # Never the config: it holds secrets.
        return f"<AppInstallation id={self.id} user_id={self.user_id} app_id={self.app_id!r} status={self.status}>"


AppInstallation.add_index(
    AppInstallation.index(
        AppInstallation.user, AppInstallation.app_id, unique=True, name="app_installations_user_app_idx"
    )
)

MODELS = (User, AppInstallation)


def create_tables(database) -> None:
    """Create the schema with Peewee (the SQLite demo database; PostgreSQL uses migrations)."""
    with database.bind_ctx(MODELS):
        database.create_tables(MODELS)
