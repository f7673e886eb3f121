"""Duoli's configuration: one frozen pydantic-settings object, read from ``DUOLI_*`` variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from duoli.errors import ConfigError

__all__ = ["Settings", "load_settings"]

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "library"


class Settings(BaseSettings):
    """Every setting; the environment variable is ``DUOLI_`` plus the field name in capitals."""

    model_config = SettingsConfigDict(env_prefix="DUOLI_", frozen=True, extra="ignore")

    kafka_url: str | None = Field(
        None,
        description="Kafka bootstrap servers (host:port,...). Unset: start the embedded broker.",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis for alerts and live state."
    )
    redis_prefix: str = Field("duoli", description="Prefix of every Redis key Duoli writes.")
    topic_prefix: str = Field(
        "duoli", description="Prefix of every Kafka topic, and the consumer group."
    )
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of the input topics.")
    rules_path: Path = Field(DEFAULT_RULES, description="A rule file or a folder of rule files.")
    allowed_lateness_seconds: float = Field(
        3600.0,
        ge=0,
        description="How far behind the clock an event may be and still land in its window.",
    )
    overdue_grace_days: float = Field(
        0.0, ge=0, description="Days after due_at before an installment is overdue."
    )
    dpd_thresholds: Annotated[tuple[int, ...], NoDecode] = Field(
        (1, 7, 30), description="Days past due at which delinquency alerts fire, e.g. 1,7,30."
    )
    default_credit_limit: float = Field(
        5000.0, gt=0, description="Limit of an account never opened."
    )
    default_apr: float = Field(0.18, gt=0, le=1, description="APR of an account never opened.")
    max_amount: float = Field(
        1_000_000.0, gt=0, description="Amounts above this are absurd and dead-lettered."
    )
    alerts_maxlen: int = Field(
        100_000, ge=100, description="Approximate MAXLEN of the duoli:alerts stream."
    )
    live_clock: bool = Field(
        True,
        description="Advance the event-time clock with the wall clock while the input is quiet.",
    )
    idle_after_seconds: float = Field(
        5.0, gt=0, description="Quiet time after which the live clock advances."
    )
    commit_interval_seconds: float = Field(
        0.5, gt=0, description="How often workers commit offsets."
    )
    rebalance_timeout_seconds: float = Field(
        3.0, gt=0, description="Consumer-group rebalance timeout."
    )
    fetch_max_wait_ms: int = Field(
        20,
        ge=1,
        le=1500,
        description="Longest a fetch of the workers' stream consumer waits for data "
        "(latency bound).",
    )
    label_maturity_days: float = Field(
        7.0,
        gt=0,
        description="Days after which an unlabelled transaction counts as legitimate: the "
        "models learn it so, and rule precision counts it so.",
    )
    fraud_alert_threshold: float = Field(
        0.9,
        gt=0,
        le=1,
        description="fraud_score at which the model raises a fraud alert by itself (once "
        "trained on enough frauds).",
    )
    model_wait_seconds: float = Field(
        0.0,
        ge=0,
        description="How long a worker waits for the model version of an event's day before "
        "scoring with the newest it has. 0 live; replays wait, to be reproducible.",
    )
    pending_limit: int = Field(
        200_000,
        ge=1000,
        description="Most examples the trainer keeps waiting for a label or maturity.",
    )
    negative_sample_rate: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Share of matured, unlabelled transactions the fraud models learn (with "
        "weight 1/rate); labels are always learned.",
    )
    promotion_margin: float = Field(
        0.02,
        ge=0,
        description="Average precision by which a challenger must beat the champion.",
    )
    promotion_min_labels: int = Field(
        2000, ge=1, description="Matured labels in the window before a promotion is considered."
    )
    policy_file: Path | None = Field(
        None,
        description="The credit policy file (YAML). Unset: the packaged "
        "duoli/policies/default.yaml.",
    )
    log_level: str = Field("WARNING", description="Log level of workers and tools.")
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port on which a worker serves Prometheus metrics at /metrics. Unset: off.",
    )
    grafana_url: str | None = Field(
        None,
        description="The Grafana (http://host:3000) that `duoli grafana push` and "
        "`duoli grafana follow` write to. Unset: those commands refuse to run.",
    )
    grafana_token: SecretStr | None = Field(
        None, description="Service-account token for DUOLI_GRAFANA_URL (Editor role)."
    )

    @field_validator("dpd_thresholds", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.strip("[] ").split(",") if part.strip())
        return value

    @field_validator("dpd_thresholds")
    @classmethod
    def _positive_sorted(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or min(value) < 1:
            raise ValueError("needs at least one threshold, each >= 1 day")
        return tuple(sorted(set(value)))

    def as_env(self) -> dict[str, str]:
        """These settings as ``DUOLI_*`` variables, for the worker processes a tool starts."""
        env = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            env[f"DUOLI_{name.upper()}"] = text.lower() if isinstance(value, bool) else text
        return env

    @property
    def embedded(self) -> bool:
        """True when Duoli must start its own broker."""
        return not self.kafka_url


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read and validate the settings once, turning validation errors into a clear ConfigError."""
    try:
        return Settings()
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"DUOLI_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
