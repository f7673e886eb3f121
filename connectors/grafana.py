"""Grafana at Duoli's edge, with grafana-client: push the dashboards, annotate changes.

These are blocking calls for deploy scripts and tools, never for stream agents. Every
grafana-client error, and the connection errors of its HTTP client (niquests), become
``GrafanaError`` at this boundary.

A Grafana that provisions ``deploy/grafana/dashboards`` from files (as docker-compose.yml
does) refuses to save those dashboards through the API: push to a Grafana that does not.

Annotations are organisation-wide and tagged ``duoli`` plus ``rule-push`` or
``model-promotion``; a dashboard shows them through an annotation query on those tags.
A change may carry a unique tag too (``push:<id>``, ``promotion:<id>``), which
``is_annotated`` looks up so that a change is annotated once, however often it is seen.
Grafana splits a tag at its first colon into a key and a value and drops whatever follows
a second one, so a unique tag has exactly one colon.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException
    from niquests.exceptions import RequestException
except ImportError as exc:  # an optional extra
    raise ImportError(
        "Grafana support needs the grafana extra: URLLIB3_NO_OVERRIDE=1 "
        "PIP_NO_BINARY=urllib3-future pip install 'duoli[grafana]'"
    ) from exc

from duoli.errors import DuoliError

__all__ = [
    "DASHBOARDS_DIR",
    "FOLDER_TITLE",
    "FOLDER_UID",
    "GrafanaError",
    "annotate",
    "annotate_model_promotion",
    "annotate_rule_push",
    "close",
    "connect",
    "dashboard_payload",
    "ensure_folder",
    "is_annotated",
    "load_dashboards",
    "push_dashboards",
]

DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"
#: The folder the provisioning in deploy/grafana/provisioning uses too.
FOLDER_UID = "duoli"
FOLDER_TITLE = "Duoli"
TAG = "duoli"

#: grafana-client does not wrap a refused connection, so niquests' errors are caught too.
_ERRORS: tuple[type[Exception], ...] = (GrafanaException, RequestException)


class GrafanaError(DuoliError):
    """Grafana failed, refused a request or cannot be reached."""


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except _ERRORS as exc:
        raise GrafanaError(f"grafana: {action}: {exc}") from exc


def connect(url: str, token: str | None = None, timeout: float = 5.0) -> GrafanaApi:
    """A client for the Grafana at ``url`` (``http://host:3000``), with a service-account token."""
    return GrafanaApi.from_url(url, credential=token, timeout=timeout)


def close(api: GrafanaApi) -> None:
    """Close the client's connections; grafana-client has no public way to."""
    api.client.s.close()


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> list[dict[str, Any]]:
    """Every ``*.json`` dashboard in ``directory``, in file-name order."""
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]


def dashboard_payload(
    dashboard: Mapping[str, Any], folder_uid: str, message: str
) -> dict[str, Any]:
    """The body of ``POST /api/dashboards/db`` that creates or overwrites ``dashboard`` by uid.

    >>> body = dashboard_payload({"uid": "ops", "title": "Ops", "id": 3}, "duoli", "v2")
    >>> body["dashboard"], body["overwrite"], body["folderUid"]
    ({'uid': 'ops', 'title': 'Ops', 'id': None}, True, 'duoli')
    """
    if not dashboard.get("uid"):
        raise GrafanaError(f"dashboard {dashboard.get('title')!r} has no uid to overwrite by")
    # A null id makes Grafana match by uid, so the same file lands on the same dashboard.
    return {
        "dashboard": {**dashboard, "id": None},
        "folderUid": folder_uid,
        "overwrite": True,
        "message": message,
    }


def ensure_folder(api: GrafanaApi, uid: str = FOLDER_UID, title: str = FOLDER_TITLE) -> str:
    """The folder ``uid``, created with ``title`` if Grafana has none."""
    with _translated(f"folder {uid}"):
        try:
            api.folder.get_folder(uid)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder(title, uid=uid)
    return uid


def push_dashboards(
    api: GrafanaApi,
    dashboards: Iterable[Mapping[str, Any]] | None = None,
    *,
    folder_uid: str = FOLDER_UID,
    folder_title: str = FOLDER_TITLE,
    message: str = "pushed by duoli",
) -> list[str]:
    """Create or overwrite each dashboard (default: the repo's) in the folder; their URLs."""
    boards = load_dashboards() if dashboards is None else list(dashboards)
    payloads = [dashboard_payload(board, folder_uid, message) for board in boards]
    ensure_folder(api, folder_uid, folder_title)
    urls = []
    for payload in payloads:
        with _translated(f"dashboard {payload['dashboard']['uid']}"):
            reply = api.dashboard.update_dashboard(payload)
        urls.append(str(reply["url"]))
    return urls


def annotate(api: GrafanaApi, text: str, tags: Iterable[str], at: datetime | None = None) -> int:
    """Add an organisation-wide annotation tagged ``duoli`` at ``at`` (aware; default now)."""
    when = at or datetime.now(UTC)
    with _translated("annotation"):
        reply = api.annotations.add_annotation(
            time_from=round(when.timestamp() * 1000), tags=[TAG, *tags], text=text
        )
    return int(reply["id"])


def is_annotated(api: GrafanaApi, tag: str) -> bool:
    """Whether Grafana holds an annotation tagged ``duoli`` and ``tag``."""
    with _translated(f"annotations tagged {tag}"):
        found = api.annotations.find_annotations(tags=[TAG, tag], limit=1)
    return bool(found)


def annotate_rule_push(
    api: GrafanaApi,
    versions: Mapping[str, int],
    author: str,
    note: str = "",
    at: datetime | None = None,
    key: str | None = None,
) -> int:
    """Mark a rule push: ``versions`` maps each pushed rule to its new version; ``key`` is
    an extra, unique tag for ``is_annotated``."""
    pushed = ", ".join(f"{rule_id} v{version}" for rule_id, version in versions.items())
    text = f"rules pushed by {author}: {pushed}" + (f" ({note})" if note else "")
    return annotate(api, text, ["rule-push", *versions, *_optional(key)], at)


def annotate_model_promotion(
    api: GrafanaApi,
    champion: str,
    previous: str,
    labels: int,
    at: datetime | None = None,
    key: str | None = None,
) -> int:
    """Mark a model promotion: ``champion`` replaced ``previous`` after ``labels`` labels;
    ``key`` is an extra, unique tag for ``is_annotated``."""
    text = f"model promoted: {champion} replaces {previous} ({labels} labels)"
    return annotate(api, text, ["model-promotion", champion, *_optional(key)], at)


def _optional(tag: str | None) -> list[str]:
    return [] if tag is None else [tag]
