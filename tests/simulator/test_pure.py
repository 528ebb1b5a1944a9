"""The simulator's pure parts: versions from firmware locations, status plans, log bytes,
the device model's checks, and the CLI's flags."""

from __future__ import annotations

import argparse
import re

import pytest

from services.simulator.cli import add_arguments, build_specs, parse_data_transfer
from services.simulator.device_model import default_model
from services.simulator.operations import firmware_plan, firmware_version_from_location, log_bytes, log_filename, upload_url
from services.simulator.station import StationSpec


@pytest.mark.parametrize(("location", "version"), [
    ("http://x/fw/2.1.0.bin", "2.1.0"),
    ("https://x/fw/v3.4.tar.gz", "v3.4"),
    ("http://x/fw/1.2.3-rc1.img", "1.2.3-rc1"),
    ("http://x/fw/4.0.1", "4.0.1"),
    ("http://x/fw/4.0.1/", "4.0.1"),
    ("ftp://x/fw/firmware.bin", "1.0.0+1"),
    ("http://x/fw/7", "1.0.0+1"),
    ("http://x/fw/charger-2.1.0.bin", "1.0.0+1"),
])
def test_version_from_location(location: str, version: str) -> None:
    assert firmware_version_from_location(location, "1.0.0") == version


def test_firmware_plans() -> None:
    ok16 = firmware_plan("ok", signed=False, plain16=True)
    assert (ok16.before_reboot, ok16.reboot, ok16.boots_new_version, ok16.after_boot) == (
        ("Downloading", "Downloaded", "Installing"), True, True, ("Installed",))
    signed = firmware_plan("ok", signed=True, plain16=False)
    assert signed.before_reboot == ("Downloading", "Downloaded", "SignatureVerified", "Installing", "InstallRebooting")
    old = firmware_plan("old_version", signed=False, plain16=False)
    assert old.reboot and not old.boots_new_version and old.after_boot == ("Installed",)
    assert not firmware_plan("download_failed", signed=True, plain16=False).reboot
    with pytest.raises(ValueError):
        firmware_plan("maybe", signed=False, plain16=False)
    with pytest.raises(ValueError):
        StationSpec("CP", "pw", firmware_outcome="maybe")


def test_log_bytes_are_deterministic_timestamped_and_a_few_kib() -> None:
    body = log_bytes("CP-1", 7)
    assert body == log_bytes("CP-1", 7)
    assert body != log_bytes("CP-1", 8) and body != log_bytes("CP-2", 7)
    assert 4096 <= len(body) <= 12288
    lines = body.decode().splitlines()
    assert all(re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z ", line) for line in lines[1:])
    assert sorted(lines[1:]) == lines[1:]     # time goes forward
    assert log_filename("CP/1", "DiagnosticsLog", 3) == "CP_1-DiagnosticsLog-3.log"
    assert upload_url("http://h/uploads/t/", "f.log") == upload_url("http://h/uploads/t", "f.log") == "http://h/uploads/t/f.log"


def test_model_values_are_checked_against_type_and_limits() -> None:
    model = default_model("CP", connectors=2)
    assert model.change_configuration("HeartbeatInterval", "0") == "Rejected"     # minLimit 1
    assert model.change_configuration("HeartbeatInterval", "1.5") == "Rejected"
    assert model.change_configuration("AuthorizeRemoteTxRequests", "yes") == "Rejected"
    assert model.change_configuration("AuthorizeRemoteTxRequests", "false") == "Accepted"
    assert model.configuration(["NumberOfConnectors"])[0][0]["value"] == "2"
    assert len([v for v in model.reportable() if v.component == "Connector"]) == 6


def test_cli_flags_reach_the_specs() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--stations", "2", "--protocol", "2.0.1", "--firmware-step-s", "0.5",
                              "--firmware-outcome", "old_version", "--report-items-per-part", "3",
                              "--data-transfer", "com.example:hello:a:b"])
    specs = build_specs(args)
    assert [(s.firmware_step_s, s.firmware_outcome, s.report_items_per_part, s.data_transfer) for s in specs] == [
        (0.5, "old_version", 3, ("com.example", "hello", "a:b"))] * 2
    assert parse_data_transfer("vendor") == ("vendor", None, None)
    assert parse_data_transfer(None) is None
