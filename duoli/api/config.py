"""The API's own settings, read from ``DUOLI_API_*`` variables.

``DUOLI_API_TOKENS`` maps each bearer token to a role, or to a user and a role:
``{"s3cret": "viewer", "t0ken": {"user": "alice", "role": "analyst"}}``. A token given
only a role acts as the user named by that role. ``DUOLI_API_TOKENS_FILE`` names a JSON
file of the same shape; tokens in both are merged, the variable winning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import IntEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from duoli.errors import ConfigError

__all__ = ["ApiSettings", "Identity", "Role", "load_api_settings"]


class Role(IntEnum):
    """Each role may do everything the roles below it may."""

    viewer = 1
    analyst = 2
    admin = 3


class Identity(BaseModel):
    """Who a token speaks for."""

    model_config = ConfigDict(frozen=True)

    user: str = Field(min_length=1)
    role: Role

    @field_validator("role", mode="before")
    @classmethod
    def _role_name(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return Role[value]
            except KeyError:
                raise ValueError(f"role must be one of {', '.join(Role.__members__)}") from None
        return value


class ApiSettings(BaseSettings):
    """The environment variable is ``DUOLI_API_`` plus the field name in capitals."""

    model_config = SettingsConfigDict(env_prefix="DUOLI_API_", frozen=True, extra="ignore")

    tokens: dict[str, Identity] = Field(
        default_factory=dict,
        repr=False,
        description="JSON object: bearer token -> role, or -> {user, role}.",
    )
    tokens_file: Path | None = Field(
        None, description="A JSON file of tokens, in the shape of DUOLI_API_TOKENS."
    )
    alerts_scan_limit: int = Field(
        20_000,
        ge=100,
        description="Most stream entries one GET /alerts reads looking for matches.",
    )

    @field_validator("tokens", mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return _identities(value) if isinstance(value, Mapping) else value

    def identities(self) -> dict[str, Identity]:
        """Every token: the file's, overridden by the variable's."""
        if self.tokens_file is None:
            return dict(self.tokens)
        try:
            data = json.loads(self.tokens_file.read_text(encoding="utf-8"))
            from_file = _TokenFile.model_validate({"tokens": data}).tokens
        except (OSError, ValueError, ValidationError) as exc:
            raise ConfigError(f"DUOLI_API_TOKENS_FILE {self.tokens_file}: {exc}") from exc
        return {**from_file, **self.tokens}


class _TokenFile(BaseModel):
    tokens: dict[str, Identity]

    @field_validator("tokens", mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return _identities(value) if isinstance(value, Mapping) else value


def _identities(tokens: Mapping[Any, Any]) -> dict[Any, Any]:
    """A bare role name becomes ``{"user": role, "role": role}``."""
    return {
        token: {"user": given, "role": given} if isinstance(given, str) else given
        for token, given in tokens.items()
    }


def load_api_settings() -> ApiSettings:
    """Read and validate ``DUOLI_API_*``; a ConfigError names what is wrong, never a token."""
    try:
        return ApiSettings()
    except SettingsError as exc:
        # tokens is the only field read as JSON, so it is the one that failed to parse
        raise ConfigError(f"invalid API settings: DUOLI_API_TOKENS is not JSON ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"DUOLI_API_{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid API settings: {problems}") from None
