"""The Duoli API: alerts and their life cycle, accounts and rules over HTTP, from Redis.

Run it with ``python -m duoli.api`` (or ``duoli api``); the spec is at ``/openapi.json``.
"""

from __future__ import annotations

from duoli.api.app import create_app, serve
from duoli.api.config import ApiSettings, Identity, Role, load_api_settings

__all__ = ["ApiSettings", "Identity", "Role", "create_app", "load_api_settings", "serve"]
