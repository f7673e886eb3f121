"""Faust wiring: the app, its topics and tables, the agents and the live-clock timer."""

from __future__ import annotations

from streams.app import Pipeline, build_pipeline
from streams.worker import run_worker

__all__ = ["Pipeline", "build_pipeline", "run_worker"]
