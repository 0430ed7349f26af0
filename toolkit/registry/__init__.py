"""The app registry: which apps exist, their fields, and the rules a config must follow.

    load_registry(path) -> Registry          read + check the JSON file (RegistryError names file/app/field)
    Registry.apps[app_id] -> AppDefinition   .fields, .field(key), .secret_keys, .required_keys
    AppDefinition.validate(config)           fast check of a stored config -> [Problem]
    AppDefinition.schema()                   marshmallow schema of a plaintext config (write path)
    schema_problems(app, config)             that schema's errors as [Problem]
    check_value(field, value)                the per-type value rule, None when valid
"""

from ._definitions import AppDefinition, FieldDefinition, Registry, SelectOption
from ._field_types import FIELD_TYPES, check_value
from ._loader import RegistryStructureError, load_registry, parse_registry
from ._problems import (
    CONFIG_NON_STRING,
    CONFIG_NOT_OBJECT,
    FIELD_INVALID,
    FIELD_MISSING,
    FIELD_UNKNOWN,
    PROBLEM_CODES,
    Problem,
)
from ._schemas import schema_problems

__all__ = [
    "CONFIG_NON_STRING",
    "CONFIG_NOT_OBJECT",
    "FIELD_INVALID",
    "FIELD_MISSING",
    "FIELD_TYPES",
    "FIELD_UNKNOWN",
    "PROBLEM_CODES",
    "AppDefinition",
    "FieldDefinition",
    "Problem",
    "Registry",
    "RegistryStructureError",
    "SelectOption",
    "check_value",
    "load_registry",
    "parse_registry",
    "schema_problems",
]
