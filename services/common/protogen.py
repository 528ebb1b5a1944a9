"""Generated protobuf code is produced by the build, never checked in.

`ensure_generated()` runs grpc_tools.protoc over `proto/` into `services/common/gen/`
(modules and their `.pyi` type stubs, which mypy reads) when the generated modules are
missing or older than their `.proto` files; `make`
calls it too (`python -m services.common.protogen`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["ensure_generated", "PROTO_ROOT", "GEN_ROOT"]

_HERE = Path(__file__).resolve().parent
PROTO_ROOT = _HERE.parent.parent / "proto"
GEN_ROOT = _HERE / "gen"


def _stale() -> list[Path]:
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    stale = []
    for proto in protos:
        rel = proto.relative_to(PROTO_ROOT).with_suffix("")
        out = GEN_ROOT / rel.parent / f"{rel.name}_pb2.py"
        stub = out.with_suffix(".pyi")
        if not out.exists() or not stub.exists() or out.stat().st_mtime < proto.stat().st_mtime:
            stale.append(proto)
    return stale


def ensure_generated() -> None:
    if not PROTO_ROOT.is_dir():
        if GEN_ROOT.is_dir():
            return  # installed without sources: use what the build produced
        raise RuntimeError(f"no proto sources at {PROTO_ROOT} and no generated code")
    stale = _stale()
    if not stale:
        return
    import grpc_tools
    from grpc_tools import protoc  # build-time dependency, imported only when needed

    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    GEN_ROOT.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={GEN_ROOT}", f"--pyi_out={GEN_ROOT}"]
    args += [str(p) for p in sorted(PROTO_ROOT.rglob("*.proto"))]
    # Several processes may start at once (tests): protoc writes each file whole, and the
    # same inputs give the same bytes, so concurrent runs are harmless.
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"protoc failed ({rc}) for {PROTO_ROOT}")
    for path in GEN_ROOT.rglob("*_pb2.py*"):
        os.utime(path)


if __name__ == "__main__":
    ensure_generated()
    sys.stdout.write(f"generated protobuf code in {GEN_ROOT}\n")
