"""Summarize a py-spy `--format raw` profile: top functions by self and by inclusive samples.

    .venv/bin/python bench/pyspy_top.py /tmp/profile.txt [--top 25] [--under connection.py]

`--under SUBSTR` keeps only stacks containing a frame that matches SUBSTR (e.g. one
code path) and reports percentages of those. Not part of the product."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_ROOT = re.escape(str(Path(__file__).resolve().parents[1]) + "/")  # this checkout, wherever it is
_SHORT = re.compile(r"\((?:.*/(?:site-packages|lib/python3\.\d+)/)?(?:" + _ROOT + r")?([^()]*)\)")


def short(frame: str) -> str:
    return _SHORT.sub(lambda m: f"({m.group(1)})", frame.strip())


def load(path: str, under: str | None) -> tuple[Counter[str], Counter[str], int]:
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        frames = [short(f) for f in m.group(1).split(";") if f]
        if under and not any(under in f for f in frames):
            continue
        n = int(m.group(2))
        total += n
        if frames:
            self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    return self_c, incl, total


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--under")
    a = p.parse_args()
    self_c, incl, total = load(a.profile, a.under)
    print(f"{total} samples")
    print("\n-- self --")
    for f, n in self_c.most_common(a.top):
        print(f"{100 * n / total:5.1f}%  {f}")
    print("\n-- inclusive --")
    for f, n in incl.most_common(a.top):
        print(f"{100 * n / total:5.1f}%  {f}")


if __name__ == "__main__":
    main()
