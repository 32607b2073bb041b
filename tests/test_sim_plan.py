"""The simulator's small languages: CLI options, planned presses, ranges, device ids."""

from __future__ import annotations

import argparse
import json

import pytest

from services.mqtt_url import MqttTarget
from services.protocol import AlarmMode, AlarmType
from watchsim.cli import add_arguments, config_from_args
from watchsim.fleet import Fleet
from watchsim.plan import (
    FleetConfig,
    PlannedPress,
    PlannedStay,
    PlannedWander,
    device_id,
    parse_press,
    parse_range,
    parse_stay,
    parse_wander,
)
from watchsim.report import progress_line


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


def test_wander_and_stay_specs() -> None:
    assert parse_wander("1@60") == PlannedWander(1, 60.0, None)
    assert parse_wander("2@0.5:90") == PlannedWander(2, 0.5, 90.0)
    assert parse_wander("2@10:-90") == PlannedWander(2, 10.0, 270.0)
    assert parse_wander("3@10:450").bearing_deg == 90.0
    for bad in ("1", "@5", "1@", "1@-5", "1@5:east", "a@5", "1:5"):
        with pytest.raises(ValueError):
            parse_wander(bad)
    assert parse_stay("2:31.2304,121.4737:150") == PlannedStay(2, 31.2304, 121.4737, 150.0)
    assert parse_stay("1:-33.86, 151.2:42.25") == PlannedStay(1, -33.86, 151.2, 42.2)
    for bad in ("2:31.2,121.4", "2:31.2:150", "31.2,121.4:150", "2:91,0:10", "2:0,181:10",
                "2:0,0:0", "2:0,0:-5"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_stay(bad)


def test_config_checks_scenarios_against_the_fleet() -> None:
    def cfg(**kw: object) -> FleetConfig:
        return FleetConfig(broker=MqttTarget("h", 1), devices=3, **kw)  # type: ignore[arg-type]

    cfg(wanders=[PlannedWander(1, 5)], stays=[PlannedStay(2, 0, 0, 10)]).validate()
    with pytest.raises(ValueError, match=r"--wander names device 4, the fleet is 1\.\.3"):
        cfg(wanders=[PlannedWander(4, 5)]).validate()
    with pytest.raises(ValueError, match="--stay names device 0"):
        cfg(stays=[PlannedStay(0, 0, 0, 10)]).validate()
    with pytest.raises(ValueError, match="two scenarios"):
        cfg(wanders=[PlannedWander(1, 5)], stays=[PlannedStay(1, 0, 0, 10)]).validate()
    with pytest.raises(ValueError, match="two scenarios"):
        cfg(wanders=[PlannedWander(2, 5), PlannedWander(2, 9)]).validate()
    with pytest.raises(ValueError, match="walk-radius"):
        cfg(walk_radius_m=0.0).validate()
    assert cfg().walk_radius() == 1500.0
    assert cfg(demo_homes=True).walk_radius() == 500.0
    assert cfg(demo_homes=True, walk_radius_m=800.0).walk_radius() == 800.0


def test_cli_scenario_and_clock_options() -> None:
    args = parser().parse_args(
        [
            "--devices", "4", "--mqtt-url", "mqtt://h:1",
            "--wander", "1@60:90", "--wander", "2@30",
            "--stay", "3:31.2304,121.4737:150",
            "--demo-homes", "--walk-radius", "400",
            "--clock-start-ago", "600", "--clock-speed", "20",
        ]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.wanders == [PlannedWander(1, 60.0, 90.0), PlannedWander(2, 30.0, None)]
    assert cfg.stays == [PlannedStay(3, 31.2304, 121.4737, 150.0)]
    assert cfg.demo_homes and cfg.walk_radius() == 400.0
    assert (cfg.clock_speed, cfg.clock_start_ago_s) == (20.0, 600.0)
    plain = config_from_args(parser().parse_args(["--mqtt-url", "mqtt://h:1"]))
    assert (plain.clock_speed, plain.clock_start_ago_s, plain.demo_homes) == (1.0, 0.0, False)
    assert plain.wanders == plain.stays == [] and plain.walk_radius() == 1500.0
    for bad in (["--wander", "1@x"], ["--stay", "1:2:3"]):
        with pytest.raises(SystemExit):
            parser().parse_args(bad)


def test_help_names_the_new_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for opt in ("--wander", "--stay", "--demo-homes", "--walk-radius", "--clock-speed",
                "--clock-start-ago"):  # fmt: skip
        assert opt in out
