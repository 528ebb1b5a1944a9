"""Static checks of the Dockerfile (issue 12, ADR 019 decision 3): no builder needed.

`make image` lints it with hadolint and builds it where a builder can pull the base image;
these checks hold the decisions a lint does not know: two stages on python:3.11-slim, the
protobuf code generated in the builder, a final stage that installs nothing (no compilers,
no pip), runs as uid 10001 with `csms` as its entry point, exposes the ports the settings
default to, and a build context that leaves local state and generated code out.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from services.common.cli import ROLES
from services.common.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return out


def _parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults, then the stages in order."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in _instructions(text):
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, f"unparsed FROM {rest!r}"
            base = re.sub(r"\$\{(\w+)\}", lambda v: global_args.get(v.group(1), v.group(0)), m.group(1))
            stages.append(Stage(base=base, name=m.group(2)))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = rest.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def _dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return _parse((ROOT / "Dockerfile").read_text())


def _env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in stage.args("ENV"):
        for name, value in re.findall(r"(\w+)=(\S+)", rest):
            env[name] = value
    return env


def test_two_stages_on_python_311_slim() -> None:
    global_args, stages = _dockerfile()
    assert global_args.get("PYTHON_IMAGE") == "python:3.11-slim"
    assert len(stages) == 2
    builder, final = stages
    assert builder.name == "builder"
    assert builder.base == final.base == "python:3.11-slim"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_builder_generates_the_protobuf_code_and_builds_the_wheel() -> None:
    builder = _dockerfile()[1][0]
    runs = " ".join(builder.args("RUN"))
    assert "python -m services.common.protogen" in runs
    assert "pip wheel" in runs
    copied = " ".join(builder.args("COPY"))
    for source in ("pyproject.toml", "proto", "services"):
        assert source in copied


def test_final_stage_installs_nothing_and_carries_no_build_tools() -> None:
    final = _dockerfile()[1][1]
    runs = " ".join(final.args("RUN"))
    for tool in ("apt-get", "apk", "pip", "gcc", "build-essential", "make ", "curl", "wget"):
        assert tool not in runs, f"the final stage runs {tool}"
    copies = final.args("COPY")
    assert copies == ["--from=builder /opt/csms /opt/csms"], copies
    assert not final.args("ADD")
    # the builder's virtualenv loses pip and setuptools before it is copied
    builder_runs = " ".join(_dockerfile()[1][0].args("RUN"))
    assert "pip uninstall -y pip setuptools" in builder_runs


def test_final_stage_runs_as_uid_10001_with_csms_as_entry_point() -> None:
    final = _dockerfile()[1][1]
    assert final.args("USER") == ["10001:10001"]
    runs = " ".join(final.args("RUN"))
    assert "--uid 10001" in runs and "--gid 10001" in runs
    assert final.args("WORKDIR") == ["/var/lib/csms"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(final.args("ENTRYPOINT")[0]) == ["csms"] and "csms" in scripts
    cmd = json.loads(final.args("CMD")[0])
    assert cmd[0] in ROLES or cmd[0].startswith("-")


def test_environment_and_ports_follow_the_settings() -> None:
    final = _dockerfile()[1][1]
    env = _env(final)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/csms/bin:")
    exposed = {int(p) for rest in final.args("EXPOSE") for p in rest.split()}
    s = Settings()
    assert exposed == {s.ocpp_port, s.ocpp_tls_port, s.api_port, s.metrics_port}


def test_labels_name_the_project_version() -> None:
    final = _dockerfile()[1][1]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    args = dict(a.partition("=")[::2] for a in final.args("ARG"))
    assert args["VERSION"] == version
    labels = " ".join(final.args("LABEL"))
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_build_context_leaves_state_tools_and_generated_code_out() -> None:
    lines = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "the context is an allow-list"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "proto", "services"}
    assert "services/common/gen/" in lines
