"""Duoli's benchmark suite (``make bench``, i.e. ``python -m bench``).

Four measurements, each against a baseline measured in the same run, because the
machines are shared and noisy: only ratios travel well between runs.

- throughput of the full pipeline against a bare Faust agent that only parses events;
- end-to-end latency (event produced to alert in Redis) against the broker round trip;
- rule evaluation cost against the same expressions as plain Python lambdas;
- state memory per account against fresh accounts with no history.
"""

from __future__ import annotations
