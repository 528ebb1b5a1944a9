"""The CLI names what it runs as "module:callable" strings (services/common imports no
service), so a typo or a renamed function would only show when that role starts. These
tests load every name the CLI holds, and build every role's services on a test runtime."""

from __future__ import annotations

import inspect

import pytest

from services.common import cli
from tests.support import a_runtime


@pytest.mark.parametrize("path", sorted({p for paths in cli.ROLES.values() for p in paths} | {cli.GATEWAY_SUPERVISOR}))
def test_every_name_the_cli_loads_is_a_callable(path: str) -> None:
    assert callable(cli._load(path)), path


def test_the_gateway_supervisor_takes_the_settings_and_a_serve_function() -> None:
    assert list(inspect.signature(cli._load(cli.GATEWAY_SUPERVISOR)).parameters) == ["settings", "serve"]


def test_embedded_mode_runs_every_single_service_role() -> None:
    singles = [p for role, paths in cli.ROLES.items() if role != "run" for p in paths]
    assert sorted(cli.ROLES["run"]) == sorted(singles)


@pytest.mark.parametrize("role", sorted(cli.ROLES))
async def test_each_role_builds_services_from_a_runtime(role: str) -> None:
    rt = a_runtime()
    services = [cli._load(path)(rt) for path in cli.ROLES[role]]
    for service in services:
        assert callable(service.start) and callable(service.stop) and callable(service.ready)
        assert isinstance(service.name, str) and service.name
        assert service.ready() is False  # not started: nothing is ready yet
