"""Faust wiring: the app, its topics and tables, the agents and the live-clock timer."""

from __future__ import annotations

from streams.app import build_app
from streams.worker import run_worker

__all__ = ["build_app", "run_worker"]
