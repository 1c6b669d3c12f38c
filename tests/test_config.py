"""config.toml: the "auto" values and the new tables are read and checked with clear errors."""

from __future__ import annotations

import pytest

from ser.config import ConfigError, load_config


def _load(tmp_path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path)


def test_defaults_are_auto():
    config = load_config(None)
    assert config.mqtt.enabled == "auto"
    assert config.pipeline.min_confidence == "auto"
    assert config.pipeline.model == "default"
    assert config.trend.window_utterances == 5 and config.trend.reset_after_s == 300.0


def test_repository_config_toml_lists_the_defaults():
    from pathlib import Path

    from ser.config import Config

    assert load_config(Path(__file__).resolve().parents[1] / "config.toml") == Config()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mqtt]\nenabled = true\n", True),
        ("[mqtt]\nenabled = false\n", False),
        ('[mqtt]\nenabled = "auto"\n', "auto"),
    ],
)
def test_mqtt_enabled_values(tmp_path, text, expected):
    enabled = _load(tmp_path, text).mqtt.enabled
    assert enabled == expected and type(enabled) is type(expected)


def test_min_confidence_number_or_auto(tmp_path):
    assert _load(tmp_path, "[pipeline]\nmin_confidence = 0.4\n").pipeline.min_confidence == 0.4
    assert _load(tmp_path, "[pipeline]\nmin_confidence = 1\n").pipeline.min_confidence == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[mqtt]\nenabled = "sometimes"\n', 'mqtt.enabled: expected true, false or "auto"'),
        ("[mqtt]\nenabled = 3\n", "mqtt.enabled: expected bool or str, got int 3"),
        ('[pipeline]\nmin_confidence = "high"\n', 'pipeline.min_confidence: expected "auto"'),
        ("[pipeline]\nmin_confidence = 1.5\n", "pipeline.min_confidence"),
        ("[trend]\nwindow_utterances = 0\n", "trend.window_utterances: expected 1-1000"),
        ("[trend]\nreset_after_s = -1\n", "trend.reset_after_s"),
        ("[trend]\nwindow = 5\n", "unknown config key trend.window"),
        ("[dashboard]\ntimeline = 0\n", "dashboard.timeline"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert message in str(info.value)
