"""The live console: ``GET /console`` (one static page) and ``GET /alerts/stream`` (SSE).

The stream pushes each alert as it enters ``{prefix}:alerts``, waiting on XREAD BLOCK
rather than polling. It starts after the newest entry at the time of the request, or after
the entry named by ``Last-Event-ID`` when a browser reconnects, so nothing between the two
is lost. Both routes take the token from the Authorization header or, because a browser's
``EventSource`` and a plain link cannot send that header, from a ``token`` query parameter.
Neither is in the OpenAPI spec: one is an endless stream, the other HTML.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from functools import cache
from importlib import resources
from typing import Annotated, Final

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from duoli.api.auth import identify, require_with_query
from duoli.api.config import Identity, Role
from duoli.api.schemas import Alert, Workflow
from duoli.api.store import ApiStore

__all__ = ["console_routes"]

_BLOCK_MS: Final = 5_000  # one XREAD waits this long before the loop checks in again
_PING_SECONDS: Final = 15  # a comment line keeps proxies from closing an idle stream
_ENTRY_ID: Final = re.compile(r"\d{1,20}-\d{1,20}")
_NO_STORE: Final = {"Cache-Control": "no-store"}

StreamViewer = Annotated[Identity, Depends(require_with_query(Role.viewer))]


def console_routes(app: FastAPI) -> None:
    """Add the stream and the page; before ``/alerts/{alert_id}``, which would match."""
    app.get("/alerts/stream", include_in_schema=False)(alert_stream)
    app.get("/console", include_in_schema=False, response_class=HTMLResponse)(console)


async def alert_stream(
    request: Request,
    _: StreamViewer,
    last_event_id: Annotated[str | None, Header(max_length=50)] = None,
) -> EventSourceResponse:
    """New alerts as server-sent events: ``event: alert``, the stream entry id as ``id``
    and the alert, with its workflow state, as JSON ``data``."""
    store: ApiStore = request.app.state.store
    if last_event_id is not None and _ENTRY_ID.fullmatch(last_event_id):
        start = last_event_id
    else:
        start = await store.last_alert_entry()
    return EventSourceResponse(_alert_events(store, start), ping=_PING_SECONDS, headers=_NO_STORE)


async def _alert_events(store: ApiStore, start: str) -> AsyncIterator[ServerSentEvent]:
    last = start
    while True:
        batch = await store.alerts_after(last, _BLOCK_MS)
        if not batch:
            continue
        states = await store.workflows([str(alert.get("alert_id")) for _, alert in batch])
        for (entry, alert), state in zip(batch, states, strict=True):
            last = entry
            model = Alert.model_validate({**alert, "workflow": Workflow.model_validate(state)})
            yield ServerSentEvent(data=model.model_dump_json(), event="alert", id=entry)


async def console(
    request: Request,
    authorization: Annotated[str | None, Header(max_length=600)] = None,
    token: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """The console page for a viewer or above; without a valid token, a page asking for one."""
    given = token
    if authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:]
    try:
        identify(request.app.state.tokens, given, Role.viewer)
    except HTTPException as exc:
        return HTMLResponse(_page("login.html"), exc.status_code, headers=_NO_STORE)
    return HTMLResponse(_page("console.html"), status.HTTP_200_OK, headers=_NO_STORE)


@cache
def _page(name: str) -> str:
    return resources.files("duoli.api").joinpath("static", name).read_text(encoding="utf-8")
