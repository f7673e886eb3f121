"""Duoli: a real-time risk engine for internet micro-lending.

The domain lives here, pure and free of I/O (events, account state, features, delinquency,
outputs, the engine), with the tools around it (simulator, replay, demo, the ``duoli`` command).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
