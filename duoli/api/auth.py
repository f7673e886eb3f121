"""Bearer-token authentication with roles: viewer < analyst < admin.

A missing or unknown token is refused with 401, a known token whose role is too low
with 403. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from duoli.api.config import Identity, Role

__all__ = ["bearer", "identify", "require", "require_with_query", "resolve_token"]

bearer = HTTPBearer(auto_error=False, description="A token from DUOLI_API_TOKENS.")


def resolve_token(tokens: Mapping[str, Identity], given: str) -> Identity | None:
    """The identity of ``given``, checking every token so timing says nothing."""
    found = None
    for token, identity in tokens.items():
        if hmac.compare_digest(token.encode(), given.encode()):
            found = identity
    return found


def identify(tokens: Mapping[str, Identity], given: str | None, role: Role) -> Identity:
    """The identity behind ``given`` if its role is ``role`` or above; 401 or 403 if not."""
    identity = None if given is None else resolve_token(tokens, given)
    if identity is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if identity.role < role:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"role {identity.role.name} may not do this; it needs {role.name} or above",
        )
    return identity


def require(role: Role) -> Callable[..., Awaitable[Identity]]:
    """A dependency admitting ``role`` and the roles above it."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Identity:
        given = None if credentials is None else credentials.credentials
        return identify(request.app.state.tokens, given, role)

    return check


def require_with_query(role: Role) -> Callable[..., Awaitable[Identity]]:
    """Like :func:`require`, also taking the token from a ``token`` query parameter.

    Only for the alert stream and the console page: a browser's ``EventSource`` and a
    plain link cannot send an Authorization header.
    """

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        token: Annotated[str | None, Query(max_length=500)] = None,
    ) -> Identity:
        given = credentials.credentials if credentials is not None else token
        return identify(request.app.state.tokens, given, role)

    return check
