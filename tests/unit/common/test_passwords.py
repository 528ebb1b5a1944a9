"""Password forms at rest (services/common/passwords.py): fingerprints that name their
pepper, the old form, and the pepper file's permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from services.common import passwords

PEPPER = b"p" * 32


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fingerprint_names_its_pepper() -> None:
    fp = passwords.fingerprint(PEPPER, "CP1", "secret-password-1234")
    scheme, pid, mac = fp.split("$")
    assert (scheme, pid, len(mac)) == ("hmac-sha256", passwords.pepper_id(PEPPER), 64)
    assert passwords.pepper_id(b"another pepper") != pid
    assert passwords.fingerprint_is_current(PEPPER, fp)
    assert not passwords.fingerprint_is_current(b"another pepper", fp)


def test_a_current_fingerprint_decides_right_and_wrong() -> None:
    stored = passwords.fingerprint(PEPPER, "CP1", "secret-password-1234")
    attempt = passwords.fingerprint(PEPPER, "CP1", "secret-password-1234")
    assert passwords.fingerprint_matches(PEPPER, attempt, stored) is True
    wrong = passwords.fingerprint(PEPPER, "CP1", "secret-password-1235")
    assert passwords.fingerprint_matches(PEPPER, wrong, stored) is False
    other_id = passwords.fingerprint(PEPPER, "CP2", "secret-password-1234")
    assert passwords.fingerprint_matches(PEPPER, other_id, stored) is False


def test_the_old_form_still_verifies_and_is_undecided_when_it_does_not_match() -> None:
    mac = passwords.fingerprint(PEPPER, "CP1", "secret-password-1234").rsplit("$", 1)[1]
    old = "hmac-sha256$" + mac
    assert passwords.verify_fingerprint(PEPPER, "CP1", "secret-password-1234", old)
    attempt = passwords.fingerprint(PEPPER, "CP1", "wrong-password-12345")
    assert passwords.fingerprint_matches(PEPPER, attempt, old) is None


@pytest.mark.parametrize("stored", ["", "garbage", "hmac-sha256$deadbeef$00", "hmac-sha256$é", "scrypt$1$2$3$4$5"])
def test_fingerprints_of_another_pepper_or_unreadable_ones_are_undecided(stored: str) -> None:
    attempt = passwords.fingerprint(PEPPER, "CP1", "secret-password-1234")
    assert passwords.fingerprint_matches(PEPPER, attempt, stored) is None


def test_the_dummy_fingerprint_matches_nothing_and_costs_a_comparison() -> None:
    attempt = passwords.fingerprint(PEPPER, "CP1", "secret-password-1234")
    assert passwords.fingerprint_matches(PEPPER, attempt, passwords.dummy_fingerprint(PEPPER)) is False


def test_the_slow_hash_round_trips() -> None:
    hashed = passwords.hash_password("secret-password-1234")
    assert passwords.verify_password_slow("secret-password-1234", hashed)
    assert not passwords.verify_password_slow("secret-password-1235", hashed)
    assert not passwords.verify_password_slow("x", "not a hash")


def test_generated_passwords_fit_ocpp() -> None:
    assert passwords.MIN_LENGTH <= len(passwords.generate_password()) <= passwords.MAX_LENGTH


def test_the_pepper_file_is_created_0600_in_a_0700_directory(tmp_path: Path) -> None:
    state = tmp_path / "state" / "nested"
    old = os.umask(0o022)
    try:
        pepper = passwords.load_pepper({"CSMS_STATE_DIR": str(state)})
    finally:
        os.umask(old)
    assert len(pepper) == 32
    assert mode(state / "pepper") == 0o600
    assert mode(state) == 0o700
    assert [p.name for p in state.iterdir()] == ["pepper"]  # no temporary file left behind
    assert passwords.load_pepper({"CSMS_STATE_DIR": str(state)}) == pepper  # kept across restarts


def test_an_existing_world_readable_pepper_file_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "pepper").write_bytes(b"x" * 32)
    os.chmod(tmp_path / "pepper", 0o644)
    assert passwords.load_pepper({"CSMS_STATE_DIR": str(tmp_path)}) == b"x" * 32
    assert mode(tmp_path / "pepper") == 0o600


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    passwords.load_pepper({"CSMS_STATE_DIR": str(tmp_path)})
    assert mode(tmp_path) == 0o755 and mode(tmp_path / "pepper") == 0o600


def test_the_environment_pepper_wins_and_touches_no_file(tmp_path: Path) -> None:
    assert passwords.load_pepper({"CSMS_AUTH_PEPPER": "abc", "CSMS_STATE_DIR": str(tmp_path / "s")}) == b"abc"
    assert not (tmp_path / "s").exists()
