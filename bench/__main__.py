"""`python -m bench <name>|all`: run one benchmark module (bench/<name>.py) or every one, in turn."""

from __future__ import annotations

import pathlib
import runpy
import sys


def names() -> list[str]:
    here = pathlib.Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in [*names(), "all"]:
        print(f"usage: python -m bench {{{'|'.join([*names(), 'all'])}}}", file=sys.stderr)
        return 2
    for name in names() if argv[0] == "all" else argv:
        print(f"== bench.{name}", flush=True)
        sys.argv = [f"bench.{name}"]
        runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
