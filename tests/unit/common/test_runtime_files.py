"""Where files go (ADR 016 §4): `bootstrap()` gives the runtime a directory when
CSMS_FILES_DIR is set, else the store itself; `csms run` defaults the directory to
./csms-files unless the variable is set (set empty: the store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common import cli
from services.common.bus.memory import MemoryBus
from services.common.config import Settings, load_settings
from services.common.runtime import Runtime, bootstrap, store_options
from services.common.store.files import DirectoryFiles
from tests.support.store import memory_store


def test_files_go_to_the_store_when_no_directory_is_set() -> None:
    store = memory_store()
    rt = bootstrap(Settings(), bus=MemoryBus(), store=store, pepper=b"p")
    assert rt.files is store
    assert Runtime(settings=Settings(), bus=MemoryBus(), store=store).files is store


def test_files_go_to_the_directory_when_one_is_set(tmp_path: Path) -> None:
    rt = bootstrap(Settings(files_dir=str(tmp_path / "f")), bus=MemoryBus(), store=memory_store(), pepper=b"p")
    assert isinstance(rt.files, DirectoryFiles) and rt.files.path == tmp_path / "f"


def test_the_settings_of_station_operations_and_their_defaults() -> None:
    s = load_settings({})
    assert (s.station_events_retention_days, s.files_dir, s.upload_max_bytes, s.upload_ttl_s, s.upload_base_url) == (
        90.0, "", 52_428_800, 3600.0, "",
    )
    s = load_settings({
        "CSMS_STATION_EVENTS_RETENTION_DAYS": "0", "CSMS_FILES_DIR": "/var/csms", "CSMS_UPLOAD_MAX_BYTES": "10",
        "CSMS_UPLOAD_TTL_S": "60", "CSMS_UPLOAD_BASE_URL": "https://csms.example/",
    })
    assert (s.station_events_retention_days, s.files_dir, s.upload_max_bytes, s.upload_ttl_s, s.upload_base_url) == (
        0.0, "/var/csms", 10, 60.0, "https://csms.example/",
    )


def test_only_cassandra_takes_the_retention_as_a_store_option() -> None:
    assert store_options(Settings(store_url="sqlite:///:memory:", station_events_retention_days=5)) == {}
    assert store_options(Settings(store_url="cassandra://h:9042/ks", station_events_retention_days=5))[
        "station_events_retention_days"
    ] == 5


def test_csms_run_defaults_the_files_directory_unless_the_variable_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSMS_FILES_DIR", raising=False)
    assert cli._embedded_files_dir(Settings()).files_dir == "./csms-files"
    monkeypatch.setenv("CSMS_FILES_DIR", "")
    assert cli._embedded_files_dir(Settings()).files_dir == ""
    monkeypatch.setenv("CSMS_FILES_DIR", "/data/files")
    assert cli._embedded_files_dir(Settings(files_dir="/data/files")).files_dir == "/data/files"
