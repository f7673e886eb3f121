from __future__ import annotations

import pytest

from duoli.errors import ConfigError
from duoli.settings import Settings, load_settings


def test_every_setting_is_listed_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    missing = [
        f"DUOLI_{name.upper()}"
        for name in Settings.model_fields
        if f"DUOLI_{name.upper()}" not in readme
    ]
    assert missing == []


def test_thresholds_read_from_a_comma_list(monkeypatch):
    monkeypatch.setenv("DUOLI_DPD_THRESHOLDS", "30,1,7")
    assert Settings().dpd_thresholds == (1, 7, 30)


def test_invalid_settings_name_the_variable(monkeypatch):
    load_settings.cache_clear()
    monkeypatch.setenv("DUOLI_PARTITIONS", "zero")
    with pytest.raises(ConfigError, match="DUOLI_PARTITIONS"):
        load_settings()
    load_settings.cache_clear()


def test_embedded_unless_a_cluster_is_given():
    assert Settings().embedded
    assert not Settings(kafka_url="kafka-1:9092").embedded


def test_settings_survive_the_trip_to_a_worker_process(monkeypatch):
    settings = Settings(
        kafka_url="k:9092", dpd_thresholds=(3, 10), live_clock=False, partitions=2,
        grafana_token="glsa_secret",
    )  # fmt: skip
    assert settings.as_env()["DUOLI_GRAFANA_TOKEN"] == "glsa_secret"
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings
