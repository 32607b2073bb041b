"""The simulator's small languages: CLI options, planned presses, ranges, device ids."""

from __future__ import annotations

import argparse
import json

import pytest
from watchsim.cli import add_arguments, config_from_args
from watchsim.fleet import Fleet
from watchsim.plan import FleetConfig, PlannedPress, device_id, parse_press, parse_range
from watchsim.report import progress_line

from services.mqtt_url import MqttTarget
from services.protocol import AlarmMode, AlarmType


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p


def test_broker_credentials_are_used_but_never_shown() -> None:
    args = parser().parse_args(["--mqtt-url", "mqtt://watch%40x:s%3Acret@broker.local"])
    cfg = config_from_args(args)
    assert (cfg.broker.username, cfg.broker.password) == ("watch@x", "s:cret")
    logs: list[str] = []
    fleet = Fleet(cfg, log=logs.append)
    shown = json.dumps(fleet.summary()) + progress_line(fleet, 0.0) + "".join(logs)
    assert "broker.local" in shown and "s:cret" not in shown


def test_press_specs() -> None:
    assert parse_press("1:sos:silent@5") == PlannedPress(1, AlarmType.SOS, AlarmMode.SILENT, 5.0)
    assert parse_press("12:fall@0.5") == PlannedPress(12, AlarmType.FALL, AlarmMode.AUDIBLE, 0.5)
    assert parse_press("3:removed@1").kind is AlarmType.REMOVED
    for bad in ("sos@5", "1:sos", "1:panic@5", "1:sos:loud@5", "1:removed:silent@1"):
        with pytest.raises(ValueError):
            parse_press(bad)


def test_ranges_and_device_ids() -> None:
    assert parse_range("30-300") == (30.0, 300.0)
    assert parse_range("5") == (5.0, 5.0)
    for bad in ("300-30", "a-b", "0-5"):
        with pytest.raises(ValueError):
            parse_range(bad)
    assert device_id("w", 1) == "w00001"
    assert device_id("w", 123456) == "w123456"
    with pytest.raises(ValueError):
        device_id("bad/", 1)


def test_config_checks_presses_against_the_fleet() -> None:
    cfg = FleetConfig(broker=MqttTarget("h", 1), devices=3, first_index=10)
    assert cfg.device_ids() == ["w00010", "w00011", "w00012"]
    cfg.presses = [parse_press("13:sos@1")]
    with pytest.raises(ValueError, match=r"10\.\.12"):
        cfg.validate()


def test_cli_options_build_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parser().parse_args(
        [
            "--devices",
            "3",
            "--fixes",
            "5",
            "--press",
            "1:sos:silent@5",
            "--press",
            "2:fall@1",
            "--offline-every",
            "600",
            "--offline-for",
            "10-20",
            "--mqtt-url",
            "mqtt://h:1999",
            "--topic-prefix",
            "t1",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.devices, cfg.fixes, cfg.rate, cfg.heartbeat_s) == (3, 5, 0.2, 60.0)
    assert [p.device_index for p in cfg.presses] == [1, 2]
    assert cfg.offline_for_s == (10.0, 20.0) and cfg.broker.port == 1999
    assert cfg.topic_prefix == "t1" and cfg.duration_s is None
    with pytest.raises(SystemExit):
        parser().parse_args(["--press", "1:boom@1"])
