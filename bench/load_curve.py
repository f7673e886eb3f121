"""``python -m bench.load_curve [RATE ...]``: one worker's CPU and latency at each offered load.

The latency section of ``make bench`` offers one load (500 events/s). This runs one worker
on the embedded broker with the latency section's rule file (every transaction raises an
alert) and offers each rate in turn for ``--seconds``, 0 meaning idle. For each it prints
the cores used by the worker (with its writer processes), the broker, this process and the
whole machine, and the latency from produce to alert in Redis, so the cost of a batch's
fixed work (its requests to the broker and Redis) shows apart from the cost of its events:
a worker whose CPU hardly grows with the rate spends it per batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from bench._kafka import CoresMeter
from bench._latency import AlertReader, alerting_worker, cpu_readers, measure_latency
from connectors.broker import EmbeddedBroker
from duoli.settings import load_settings

DEFAULT_RATES = (0.0, 10.0, 100.0, 500.0)
COLUMNS = {  # header: the key of the cores in a row
    "worker": "worker_cpu_cores",  # with its trainer and ledger writer
    "broker": "broker_cpu_cores",
    "bench": "bench_cpu_cores",  # this process: the load and the alert reader
    "machine": "machine_busy_cores",
}


def load_curve(rates: list[float], seconds: float, log_dir: Path) -> list[dict[str, Any]]:
    """One row per rate, in order, from one worker that stays up between them."""
    settings = load_settings().model_copy(update={"kafka_url": None})
    with (
        EmbeddedBroker(log_path=log_dir / "tansu.log") as broker,
        alerting_worker(broker.url, settings, log_dir / "worker.log", "curve") as worker,
    ):
        readers = cpu_readers(worker.pid, broker.pid)
        offer = partial(_offer, broker.url, worker.topic, worker.reader, readers, seconds)
        return [offer(f"{worker.prefix}-{step}", rate) for step, rate in enumerate(rates)]


def _offer(
    url: str, topic: str, reader: AlertReader, readers: Mapping[str, Callable[[], float]],
    seconds: float, tag: str, rate: float,
) -> dict[str, Any]:  # fmt: skip
    """The cores used, and the latency, while ``rate`` events/s are offered."""
    meter = CoresMeter(readers)
    latency: dict[str, Any] = {}
    if rate > 0:
        latency = measure_latency(url, topic, tag, rate, seconds, reader)
    else:
        time.sleep(seconds)
    return (
        {"rate_per_s": rate}
        | meter.cores()
        | {key: latency.get(key) for key in ("p50_ms", "p99_ms")}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load_curve", description=__doc__)
    parser.add_argument("rates", nargs="*", type=float, default=list(DEFAULT_RATES))
    parser.add_argument("--seconds", type=float, default=10.0, help="per rate")
    args = parser.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="duoli-curve-"))
    print(f"cores used per offered load (logs in {log_dir})")
    print(f"{'events/s':>8}{''.join(f'{name:>9}' for name in COLUMNS)}  p50 ms  p99 ms")
    for row in load_curve(args.rates, args.seconds, log_dir):
        cores = "".join(f"{row[key]:>9.2f}" for key in COLUMNS.values())
        latency = "  ".join(
            f"{row[key]:>6}" if row[key] is not None else "     -" for key in ("p50_ms", "p99_ms")
        )
        print(f"{row['rate_per_s']:>8.0f}{cores}  {latency}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
