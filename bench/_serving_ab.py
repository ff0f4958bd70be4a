"""Server CPU per request of system (a), this tree vs another checkout of Flywheel, side by side.

    python -m bench._serving_ab --base /tmp/fw-base [--hidden 64,32] [--requests 1500] [--rounds 2]

For measuring a change to Flywheel's own per-request code: trains one model, starts (a)
(int8, adaptive batching, metrics and the traffic log on, as bench.serving does) twice, once with
`--base` first on PYTHONPATH (e.g. `git archive HEAD flywheel | tar -x -C /tmp/fw-base`) and once
with this tree, and drives both with one-record requests at concurrency 1 and 16, alternating the
order per round. Prints the server's CPU ms per request (all of its processes, from /proc).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench import _serving_systems as systems
from bench import serving

LEVELS = (1, 16)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._serving_ab")
    parser.add_argument("--base", required=True, help="directory holding the baseline flywheel/ package")
    parser.add_argument("--hidden", type=serving.hidden_layers, default=systems.ARCHITECTURE)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    cpu: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-ab-") as tmp:
        work = Path(tmp)
        model_dir = systems.train(work, args.hidden)
        servers = {
            "base": _flywheel(work, "base", model_dir, args.base),
            "this": _flywheel(work, "this", model_dir, None),
        }
        try:
            for server in servers.values():
                server.wait_ready()
            records = systems.traffic_records(2000)
            for rnd in range(args.rounds):
                order = list(servers) if rnd % 2 == 0 else list(reversed(servers))
                for conc in LEVELS:
                    for name in order:
                        cell = serving.measure(servers[name], records, conc, 1, args.requests)
                        assert cell["stats"].errors == 0, cell["stats"].error_samples
                        ms = cell["cpu_seconds"] * 1000.0 / cell["cpu_requests"]
                        cpu.setdefault((name, conc), []).append(ms)
                        print(f"round {rnd} {name:4} c={conc:<2} {ms:.3f} ms/request", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    print("\nserver CPU ms/request (median of rounds)")
    for conc in LEVELS:
        base, this = statistics.median(cpu["base", conc]), statistics.median(cpu["this", conc])
        print(f"  concurrency {conc:<2}  base {base:.3f}  this {this:.3f}  ({this / base - 1:+.0%})")


def _flywheel(work: Path, name: str, model_dir: Path, source: str | None) -> systems.Server:
    return systems.start_flywheel(work, name, model_dir, True, True, source=Path(source or systems.REPO))


if __name__ == "__main__":
    main()
