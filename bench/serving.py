"""Serving throughput and latency: Flywheel's BentoML service vs itself unbatched vs KServe.

One model (a Shuttle MLP trained by `python -m flywheel.training` on period 1 of the example data,
exported as fp32 torch and ONNX Runtime int8; hidden layers from `--hidden`, default 64,32 as in
examples/trainingrun-local.yaml), three real HTTP servers started side by side
(bench/_serving_systems.py):

  (a) flywheel-int8-batched  FlywheelService, int8, adaptive batching (maxBatchSize 64)
  (b) flywheel-fp32-single   the same service, fp32, batching off
  (c) kserve-int8            KServe 0.21's ModelServer on the same int8 file (bench/_kserve_server.py)
  (d) flywheel-int8-oip      server (a) again, asked through the Open Inference Protocol v2
                             (/v2/models/{name}/infer, one FP32 [N, F] tensor) instead of /predict

Load: a closed-loop aiohttp client (bench/_serving_load.py), concurrency 1, 16 and 64, one record
per request, a fixed request count per cell after a warm-up, in `--rounds` rounds; in each round
every concurrency level runs all three systems back to back, in a rotating order, so load from other
processes hits them alike. Cells pool their rounds. A 16-records-per-request variant runs at
concurrency 16 and 64. Besides wall-clock figures, each cell records the server's own CPU time per
request (all processes of its session, from /proc), which other load on the machine distorts less.

Goal (issue 4): (a) >= 3x the throughput of (b) at no worse p99, ahead of (c), zero errors.

    python -m bench.serving [--hidden 64,32] [--requests 2000] [--rounds 2] [--bentoml-observability]
        ->  table, bench/results/serving.json (serving-h1024x1024x1024.json for --hidden 1024,1024,1024)

--hidden sets the MLP's hidden layers (the TrainingRun's model.architecture.hiddenLayers); all three
systems serve that one trained model. With the default 9-64-32-2 model a request costs ~0.5 ms of
HTTP handling and ~0.01 ms of model, so batching has little to share; 1024,1024,1024 (2.1M
multiply-adds per row: the width of MLPerf DLRM's top MLP, the upper end of the MLP search space of
Gorishniy et al. 2021 "Revisiting Deep Learning Models for Tabular Data") is a production-size
tabular model whose compute matters (torch fp32 ~0.2 ms per single row on one EPYC core).

--bentoml-observability turns BentoML's access log and /predict OpenTelemetry middleware back on
in (a) and (b) (both off by default in the serving config), and KServe's uvicorn access log in (c)
(off otherwise, for parity), to measure what they cost; it writes serving-observability*.json.

To measure a change to Flywheel's own per-request code, `python -m bench._serving_ab --base DIR`
runs (a) from this tree and from a baseline checkout side by side and prints server CPU ms/request.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _common
from bench import _serving_load as load
from bench import _serving_systems as systems

RESULTS = Path(__file__).parent / "results" / "serving.json"
SYSTEMS = ("flywheel-int8-batched", "flywheel-fp32-single", "kserve-int8", "flywheel-int8-oip")
LEVELS = (1, 16, 64)
WIDE_LEVELS = (16, 64)  # the 16-records-per-request variant
WIDE_ROWS = 16
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of process `root` and its live descendants (a server and its workers;
    BentoML's process manager puts workers in sessions of their own, so the tree, not the session)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(entry.name)  # fields after "(comm)": state ppid pgrp session ... utime(11) stime(12)
        parent[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])
    total = 0
    for pid, spent in ticks.items():
        node = pid
        while node > 1 and node != root:
            node = parent.get(node, 0)
        if node == root:
            total += spent
    return total / CLK_TCK


def measure(
    server: systems.Server, records: list[dict[str, Any]], conc: int, rows: int, requests: int
) -> dict[str, Any]:
    cpu0 = tree_cpu_seconds(server.proc.pid)
    stats = load.run(
        server.url + server.predict_path,
        load.PROTOCOLS[server.protocol],
        records,
        concurrency=conc,
        requests=requests,
        warmup=max(conc * 4, 40),
        rows=rows,
    )
    cpu = tree_cpu_seconds(server.proc.pid) - cpu0  # warm-up included: the same share for all
    return {"stats": stats, "cpu_seconds": cpu, "cpu_requests": requests + max(conc * 4, 40)}


def pool(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell from its rounds: all latencies, summed time, errors and CPU."""
    first = cells[0]["stats"]
    stats = load.Stats(
        concurrency=first.concurrency,
        rows_per_request=first.rows_per_request,
        requests=sum(c["stats"].requests for c in cells),
        errors=sum(c["stats"].errors for c in cells),
        seconds=sum(c["stats"].seconds for c in cells),
        latencies_ms=[x for c in cells for x in c["stats"].latencies_ms],
        error_samples=[e for c in cells for e in c["stats"].error_samples][:5],
    )
    cpu_ms = 1000.0 * sum(c["cpu_seconds"] for c in cells) / sum(c["cpu_requests"] for c in cells)
    return {**stats.summary(), "serverCpuMsPerRequest": round(cpu_ms, 2)}


def run_matrix(
    servers: dict[str, systems.Server], records: list[dict[str, Any]], requests: int, rounds: int
) -> dict[tuple[str, int, int], dict[str, Any]]:
    cells: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    plan = [(conc, 1, requests) for conc in LEVELS]
    plan += [(conc, WIDE_ROWS, max(requests // 4, 50)) for conc in WIDE_LEVELS]
    for r in range(rounds):
        for i, (conc, rows, count) in enumerate(plan):
            shift = (r + i) % len(SYSTEMS)
            for name in SYSTEMS[shift:] + SYSTEMS[:shift]:  # rotate who goes first
                cell = measure(servers[name], records, conc, rows, count)
                cells.setdefault((name, conc, rows), []).append(cell)
                s = cell["stats"]
                print(
                    f"  round {r + 1} {name:22} c={conc:<3} rows={rows:<3} "
                    f"{s.throughput:8.1f} req/s p99 {s.percentile(99):8.1f} ms errors {s.errors}",
                    flush=True,
                )
    return {key: pool(value) for key, value in cells.items()}


def verdicts(results: dict[tuple[str, int, int], dict[str, Any]]) -> list[dict[str, Any]]:
    a, b, c, d = SYSTEMS
    out = []
    for conc, rows in [(lvl, 1) for lvl in LEVELS] + [(lvl, WIDE_ROWS) for lvl in WIDE_LEVELS]:
        ra, rb, rc, rd = (results[(n, conc, rows)] for n in (a, b, c, d))
        speedup = ra["requestsPerSecond"] / rb["requestsPerSecond"]
        out.append(
            {
                "concurrency": conc,
                "rowsPerRequest": rows,
                "throughputAvsB": round(speedup, 2),
                "throughputAvsC": round(ra["requestsPerSecond"] / rc["requestsPerSecond"], 2),
                "throughputDvsC": round(rd["requestsPerSecond"] / rc["requestsPerSecond"], 2),
                "cpuPerRequestBvsA": round(rb["serverCpuMsPerRequest"] / ra["serverCpuMsPerRequest"], 2),
                "p99AnotWorseThanB": ra["p99Ms"] <= rb["p99Ms"],
                "goalMet": speedup >= 3.0
                and ra["p99Ms"] <= rb["p99Ms"]
                and ra["requestsPerSecond"] > rc["requestsPerSecond"],
            }
        )
    return out


def print_table(results: dict[tuple[str, int, int], dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    head = f"{'system':22} {'conc':>4} {'rows':>4} {'req/s':>8} {'rec/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"\n{head} {'cpu ms/req':>10} {'errors':>6}")
    for (name, conc, rows), r in sorted(results.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        print(
            f"{name:22} {conc:>4} {rows:>4} {r['requestsPerSecond']:>8.1f} {r['recordsPerSecond']:>8.1f} "
            f"{r['p50Ms']:>8.1f} {r['p99Ms']:>8.1f} {r['serverCpuMsPerRequest']:>10.2f} {r['errors']:>6}"
        )
    print(
        f"\n{'conc':>4} {'rows':>4} {'a/b req/s':>10} {'a/c req/s':>10} {'d/c req/s':>10} {'b/a cpu':>8} "
        f"{'p99 a<=b':>9} goal"
    )
    for v in checks:
        print(
            f"{v['concurrency']:>4} {v['rowsPerRequest']:>4} {v['throughputAvsB']:>10.2f} "
            f"{v['throughputAvsC']:>10.2f} {v['throughputDvsC']:>10.2f} {v['cpuPerRequestBvsA']:>8.2f} "
            f"{v['p99AnotWorseThanB']!s:>9} {'met' if v['goalMet'] else 'NOT met'}"
        )


def hidden_layers(text: str) -> tuple[int, ...]:
    """`--hidden 1024,1024,1024` -> (1024, 1024, 1024)."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive widths, got {text!r}")
    return sizes


def results_path(hidden: tuple[int, ...], observability: bool) -> Path:
    """serving.json for the default model, serving-h1024x1024x1024.json for others."""
    stem = "serving-observability" if observability else "serving"
    if hidden != systems.ARCHITECTURE:
        stem += "-h" + "x".join(str(h) for h in hidden)
    return RESULTS.with_name(stem + ".json")


def describe(model_dir: Path) -> str:
    """The trained MLP's shape from its model card, e.g. 'Shuttle MLP 9-64-32-2'."""
    arch = json.loads((model_dir / "model_card.json").read_text())["architecture"]
    shape = [arch["n_inputs"], *arch["hidden"], arch["n_outputs"]]
    return "Shuttle MLP " + "-".join(str(n) for n in shape)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--hidden",
        type=hidden_layers,
        default=systems.ARCHITECTURE,
        help="hidden layer widths, comma-separated (default 64,32)",
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per cell and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--bentoml-observability",
        action="store_true",
        help="BentoML access log and /predict tracing middleware on in (a) and (b)",
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        model_dir = systems.train(work, args.hidden)
        model = describe(model_dir)
        print(f"trained {model} in {time.monotonic() - started:.1f} s", flush=True)
        servers: dict[str, systems.Server] = {}
        try:
            obs = args.bentoml_observability
            servers[SYSTEMS[0]] = systems.start_flywheel(work, SYSTEMS[0], model_dir, True, True, obs)
            servers[SYSTEMS[1]] = systems.start_flywheel(work, SYSTEMS[1], model_dir, False, False, obs)
            servers[SYSTEMS[2]] = systems.start_kserve(work, SYSTEMS[2], model_dir, access_log=obs)
            # (d): server (a) through the Open Inference Protocol (features in the card's order).
            card = json.loads((model_dir / "model_card.json").read_text())
            load.PROTOCOLS["oip-v2"] = load.oip([f["name"] for f in card["features"]])
            servers[SYSTEMS[3]] = dataclasses.replace(
                servers[SYSTEMS[0]],
                name=SYSTEMS[3],
                predict_path=f"/v2/models/{SYSTEMS[0]}/infer",
                protocol="oip-v2",
            )
            for server in servers.values():
                server.wait_ready()
            records = systems.traffic_records(2000)
            results = run_matrix(servers, records, args.requests, args.rounds)
        finally:
            for server in {id(s.proc): s for s in servers.values()}.values():  # (d) is (a)'s process
                server.stop()
    checks = verdicts(results)
    print_table(results, checks)
    out = {
        "machine": {
            **_common.machine(),
            "loadAverageBefore": load_before,
            "loadAverageAfter": os.getloadavg(),
        },
        "model": f"{model} (flywheel.training, period 1); int8 = ONNX Runtime static QDQ (train-calibrated)",
        "hiddenLayers": list(args.hidden),
        "versions": systems.versions(),
        "batching": systems.BATCHING,
        "goal": "(a) >= 3x the req/s of (b), p99(a) <= p99(b), req/s(a) > req/s(c), per cell; 0 errors",
        "bentomlObservability": args.bentoml_observability,
        "requestsPerCellRound": args.requests,
        "rounds": args.rounds,
        "results": [{"system": k[0], **v} for k, v in results.items()],
        "checks": checks,
        "errorsTotal": sum(v["errors"] for v in results.values()),
    }
    path = results_path(args.hidden, args.bentoml_observability)
    _common.write_results(path, out)
    print(f"\nload average before {load_before}, after {os.getloadavg()}; wrote {path}")


if __name__ == "__main__":
    main()
