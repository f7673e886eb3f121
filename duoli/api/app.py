"""The API service: alerts and their life cycle, accounts and rules, served from Redis.

``create_app(settings)`` builds the ASGI app; ``serve`` runs it with uvicorn. Every route
but ``/health`` needs a bearer token (see :mod:`duoli.api.auth`). The live console and its
alert stream are in :mod:`duoli.api.console`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse

from duoli.api.auth import require
from duoli.api.config import ApiSettings, Identity, Role, load_api_settings
from duoli.api.console import console_routes
from duoli.api.metrics import instrument
from duoli.api.rulebook import RuleBook, RuleSource, rule_source
from duoli.api.schemas import (
    AccountState,
    AccountView,
    Alert,
    AlertDetail,
    AlertKind,
    AlertList,
    AlertStatus,
    AssignBody,
    CommentBody,
    Health,
    NoteBody,
    Problem,
    ResolveBody,
    RuleList,
    RuleStats,
    RuleView,
    Severity,
    Transition,
    Workflow,
)
from duoli.api.store import ApiStore, StepRefused, UnknownAlert, WorkflowStep
from duoli.errors import DuoliError
from duoli.settings import Settings

__all__ = ["create_app", "serve"]

_OPEN, _ACKED, _RESOLVED = (s.value for s in AlertStatus)
ACKNOWLEDGE: Final = WorkflowStep("acknowledge", (_OPEN,), _ACKED)
ASSIGN: Final = WorkflowStep("assign", (_OPEN, _ACKED))
RESOLVE: Final = WorkflowStep("resolve", (_OPEN, _ACKED), _RESOLVED)
COMMENT: Final = WorkflowStep("comment", (_OPEN, _ACKED, _RESOLVED))

_PAGE: Final = 200  # alerts whose workflow state is read in one pipeline
_ACCOUNT_ALERTS: Final = 20

Viewer = Annotated[Identity, Depends(require(Role.viewer))]
Analyst = Annotated[Identity, Depends(require(Role.analyst))]
AlertId = Annotated[str, Path(min_length=1, max_length=200)]


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Problem} for code in (401, 403, 503, *codes)}


def create_app(
    settings: Settings,
    api_settings: ApiSettings | None = None,
    *,
    rules: RuleSource | None = None,
) -> FastAPI:
    """The ASGI app, reading Redis at ``settings.redis_url`` under ``settings.redis_prefix``."""
    api_settings = api_settings or load_api_settings()
    store = ApiStore(settings.redis_url, settings.redis_prefix)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.start()
        try:
            yield
        finally:
            await store.close()

    app = FastAPI(title="Duoli API", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.api_settings = api_settings
    app.state.tokens = api_settings.identities()
    app.state.store = store
    app.state.rules = rules or rule_source(settings)
    app.add_exception_handler(DuoliError, _unavailable)
    _routes(app)
    app.state.metrics = instrument(app)
    return app


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


def _store(request: Request) -> ApiStore:
    store: ApiStore = request.app.state.store
    return store


Store = Annotated[ApiStore, Depends(_store)]


def _routes(app: FastAPI) -> None:
    console_routes(app)  # /alerts/stream first: /alerts/{alert_id} would match it
    app.get("/health", response_model=Health, tags=["health"])(health)
    app.get("/alerts", response_model=AlertList, responses=_problems(), tags=["alerts"])(
        list_alerts
    )
    app.get(
        "/alerts/{alert_id}",
        response_model=AlertDetail,
        responses=_problems(404),
        tags=["alerts"],
    )(get_alert)
    for name, route in (
        ("acknowledge", acknowledge),
        ("assign", assign),
        ("resolve", resolve),
        ("comment", comment),
    ):
        app.post(
            f"/alerts/{{alert_id}}/{name}",
            response_model=AlertDetail,
            responses=_problems(400, 404, 409),
            tags=["alerts"],
        )(route)
    app.get(
        "/accounts/{account_id}",
        response_model=AccountView,
        responses=_problems(404),
        tags=["accounts"],
    )(get_account)
    app.get("/rules", response_model=RuleList, responses=_problems(), tags=["rules"])(list_rules)
    app.get("/rules/{rule_id}", response_model=RuleView, responses=_problems(404), tags=["rules"])(
        get_rule
    )


# -- health ----------------------------------------------------------------------------------


async def health(store: Store) -> Health:
    """Unauthenticated: whether the API can reach Redis."""
    try:
        reachable = await store.ping()
    except DuoliError:
        reachable = False
    return Health(status="ok" if reachable else "degraded", redis=reachable)


# -- alerts ----------------------------------------------------------------------------------


async def list_alerts(
    request: Request,
    store: Store,
    _: Viewer,
    kind: AlertKind | None = None,
    severity: Severity | None = None,
    status_: Annotated[AlertStatus | None, Query(alias="status")] = None,
    account_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    """Alerts newest first, filtered by kind, severity, workflow status and account."""
    matches = {
        name: value
        for name, value in (("kind", kind), ("severity", severity), ("account_id", account_id))
        if value is not None
    }
    scan_limit = request.app.state.api_settings.alerts_scan_limit
    found, truncated = await _find_alerts(store, matches, status_, limit, scan_limit)
    return AlertList(alerts=found, count=len(found), truncated=truncated)


async def _find_alerts(
    store: ApiStore,
    matches: Mapping[str, str],
    wanted: AlertStatus | None,
    limit: int,
    scan_limit: int,
) -> tuple[list[Alert], bool]:
    """Up to ``limit`` matching alerts, and whether the scan stopped before the stream's end."""
    found: list[Alert] = []
    async for page, exhausted in store.alert_pages(matches, scan_limit):
        for alert in await _with_workflow(store, page):
            if wanted is None or alert.workflow.status == wanted:
                found.append(alert)
            if len(found) == limit:
                return found, True
        if exhausted:
            return found, False
    return found, True


async def _with_workflow(store: ApiStore, alerts: list[dict[str, Any]]) -> list[Alert]:
    found: list[Alert] = []
    for start in range(0, len(alerts), _PAGE):
        chunk = alerts[start : start + _PAGE]
        states = await store.workflows([str(alert.get("alert_id")) for alert in chunk])
        found += [_alert(Alert, alert, state) for alert, state in zip(chunk, states, strict=True)]
    return found


def _alert(model: type[Alert], alert: Mapping[str, Any], state: Mapping[str, str]) -> Any:
    return model.model_validate({**alert, "workflow": Workflow.model_validate(dict(state))})


async def get_alert(alert_id: AlertId, store: Store, _: Viewer) -> AlertDetail:
    """One alert with its workflow state and every recorded transition."""
    return await _detail(store, alert_id)


async def _detail(store: ApiStore, alert_id: str) -> AlertDetail:
    try:
        alert = await store.alert(alert_id)
    except UnknownAlert:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id!r}") from None
    [state] = await store.workflows([alert_id])
    detail: AlertDetail = _alert(AlertDetail, alert, state)
    detail.transitions = [Transition.model_validate(t) for t in await store.transitions(alert_id)]
    return detail


async def acknowledge(
    alert_id: AlertId, store: Store, who: Analyst, body: NoteBody | None = None
) -> AlertDetail:
    """open -> acknowledged."""
    note = body.comment if body else None
    return await _step(store, alert_id, ACKNOWLEDGE, who, comment=note)


async def assign(alert_id: AlertId, body: AssignBody, store: Store, who: Analyst) -> AlertDetail:
    """Give an open or acknowledged alert to a user; the status stays."""
    return await _step(store, alert_id, ASSIGN, who, assignee=body.assignee, comment=body.comment)


async def resolve(alert_id: AlertId, body: ResolveBody, store: Store, who: Analyst) -> AlertDetail:
    """open or acknowledged -> resolved, with a resolution."""
    return await _step(
        store, alert_id, RESOLVE, who, resolution=body.resolution.value, comment=body.comment
    )


async def comment(alert_id: AlertId, body: CommentBody, store: Store, who: Analyst) -> AlertDetail:
    """A note on the alert, in any status; recorded as a transition that keeps the status."""
    return await _step(store, alert_id, COMMENT, who, comment=body.comment)


async def _step(
    store: ApiStore,
    alert_id: str,
    step: WorkflowStep,
    who: Identity,
    *,
    assignee: str | None = None,
    resolution: str | None = None,
    comment: str | None = None,
) -> AlertDetail:
    entry = {
        "action": step.action,
        "user": who.user,
        "role": who.role.name,
        "at": _now(),
        "assignee": assignee,
        "resolution": resolution,
        "comment": comment,
    }
    try:
        await store.step(
            alert_id, step, entry, assignee=assignee or "", resolution=resolution or ""
        )
    except UnknownAlert:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id!r}") from None
    except StepRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{exc} (alert {alert_id!r})") from None
    return await _detail(store, alert_id)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- accounts --------------------------------------------------------------------------------


async def get_account(
    account_id: Annotated[str, Path(min_length=1, max_length=200)],
    request: Request,
    store: Store,
    _: Viewer,
) -> AccountView:
    """The account's live state and its latest alerts."""
    state = await store.account(account_id)
    if not state:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no account {account_id!r} in Redis")
    scan_limit = request.app.state.api_settings.alerts_scan_limit
    recent, _more = await _find_alerts(
        store, {"account_id": account_id}, None, _ACCOUNT_ALERTS, scan_limit
    )
    return AccountView(
        account_id=account_id,
        state=AccountState.model_validate(state),
        recent_alerts=recent,
    )


# -- rules -----------------------------------------------------------------------------------


async def list_rules(request: Request, store: Store, _: Viewer) -> RuleList:
    """The rules the workers run, with their live statistics, plus rules known only by
    their statistics."""
    return await _rule_list(request, store)


async def get_rule(
    rule_id: Annotated[str, Path(min_length=1, max_length=200)],
    request: Request,
    store: Store,
    _: Viewer,
) -> RuleView:
    """One rule and its statistics."""
    for rule in (await _rule_list(request, store)).rules:
        if rule.rule_id == rule_id:
            return rule
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rule {rule_id!r}")


async def _rule_list(request: Request, store: ApiStore) -> RuleList:
    source: RuleSource = request.app.state.rules
    maturity = request.app.state.settings.label_maturity_days
    book, stats = await asyncio.gather(asyncio.to_thread(source), store.rule_stats(maturity))
    return RuleList(ruleset_version=book.version, rules=_rule_views(book, stats))


def _rule_views(book: RuleBook, stats: Mapping[str, Mapping[str, Any]]) -> list[RuleView]:
    views = [
        RuleView(
            rule_id=rule.id,
            description=rule.description,
            expression=rule.expression,
            severity=rule.severity,
            action=rule.action,
            mode=rule.mode,
            version=rule.version,
            applies_to=rule.applies_to,
            kind=rule.kind,
            source=source,
            stats=RuleStats.model_validate(stats.get(rule.id, {})),
        )
        for rule, source in book.rules
    ]
    known = {view.rule_id for view in views}
    views += [
        RuleView(rule_id=rule_id, source="stats_only", stats=RuleStats.model_validate(row))
        for rule_id, row in sorted(stats.items())
        if rule_id not in known
    ]
    return views


# -- running ---------------------------------------------------------------------------------


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the API with uvicorn until interrupted."""
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())
