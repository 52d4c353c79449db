"""Side-by-side benchmark, same machine, same run: one Flower app (numpy
model, deterministic updates) with plain FedAvg, with Flower's SecAgg+
(SecAggPlusWorkflow + secaggplus_mod) and with sealroom (SealroomWorkflow +
sealroom_mod, a coordinator and 3 helpers on loopback over mutual TLS).

For each clients × parameters configuration it prints the fit-round time
(configure_fit to aggregate_fit, median over the measured rounds) and the
bytes each client uploads per round: the serialized size of every reply a
client sends the Flower server (all SecAgg+ stages), plus, for sealroom,
the shares it uploads to the helpers. Ratios are against plain Flower in
the same run. Nothing here is asserted: it measures.

    python python/benchmarks/flower_bench.py                       # 10 and 100 clients x 100k
    python python/benchmarks/flower_bench.py --clients 10 --params 100000 --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))
os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])


class MeasuringGrid:
    """Wraps a Flower Grid and adds up the serialized size of every reply."""

    def __init__(self, grid, sizes: dict):
        self._grid = grid
        self._sizes = sizes
        self.round = 0

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *, timeout=None):
        from flwr.common.serde import recorddict_to_proto

        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if reply.has_content():
                n = recorddict_to_proto(reply.content).ByteSize()
                per_round = self._sizes.setdefault(self.round, {})
                per_round[reply.metadata.src_node_id] = per_round.get(reply.metadata.src_node_id, 0) + n
        return replies


def run(mode: str, n_clients: int, n_params: int, rounds: int, workdir: Path) -> dict:
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    import flower_app
    import sealroom

    shapes = flower_app.shapes_for(n_params)
    record: dict = {}
    sizes: dict = {}
    fed = None
    if mode.startswith("sealroom"):
        fed = sealroom.LocalFederation(str(workdir / f"fed-{mode}-{n_clients}"), clients=n_clients,
                                       min_clients=2, upload_window_ms=120_000)
        os.environ["SEALROOM_CLIENT_CONFIG"] = str(Path(fed.dir) / "client-{partition_id}.toml")
    _, client_app = flower_app.make_apps(mode, shapes, rounds, record,
                                         fed.admin_config if fed else None, n_clients)
    server_app = ServerApp()

    @server_app.main()
    def main(grid, context):
        strategy = flower_app.CapturingFedAvg(
            record, fraction_evaluate=0.0, on_fit_config_fn=flower_app.fit_config,
            min_fit_clients=n_clients, min_available_clients=n_clients,
        )
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
        measuring = MeasuringGrid(grid, sizes)
        if mode.startswith("sealroom"):
            fit = sealroom.flower.SealroomWorkflow(fed.admin_config, clip=1.0, max_weight=1000,
                                                   wait_for_upload=mode == "sealroom-wait")
            record["workflow"] = fit
        elif mode == "secaggplus":
            fit = SecAggPlusWorkflow(num_shares=0.5, reconstruction_threshold=0.6, max_weight=1000)
        else:
            fit = None
        inner = fit or __import__("flwr.server.workflow", fromlist=["x"]).default_workflows.default_fit_workflow

        def counting_fit(g, ctx):
            measuring.round += 1
            inner(measuring, ctx)

        DefaultWorkflow(fit_workflow=counting_fit)(grid, legacy)

    import sealroom.flower  # noqa: F401  (imported for the workflow above)

    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=n_clients,
                   backend_config={"client_resources": {"num_cpus": 1}})
    if fed is not None:
        fed.close()
    measured = range(2, rounds + 1) if rounds > 1 else range(1, 2)
    times = [record["finished"][r] - record["started"][r] for r in measured]
    uploads = []
    for r in measured:
        flower_bytes = list(sizes.get(r, {}).values())
        per_client = statistics.mean(flower_bytes) if flower_bytes else 0.0
        if mode == "sealroom-wait":
            per_client += statistics.mean(record["workflow"].uploads[r])
        elif mode == "sealroom":
            per_client = float("nan")  # replies leave before the upload ends: see 'sealroom-wait'
        uploads.append(per_client)
    return {"round_s": statistics.median(times), "upload_bytes": statistics.mean(uploads),
            "rounds_measured": len(times)}


MODES = ["plain", "secaggplus", "sealroom", "sealroom-wait"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="10,100")
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per run; the first is warm-up")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated subset of " + ",".join(MODES) + " (plain is always run)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    modes = ["plain"] + [m for m in args.modes.split(",") if m in MODES and m != "plain"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(c) for c in args.clients.split(",")]:
            row = {"clients": n, "params": args.params}
            for mode in modes:
                row[mode] = run(mode, n, args.params, args.rounds, Path(tmp))
                print(f"{n} clients x {args.params}: {mode}: {row[mode]}", flush=True)
            results.append(row)
    print()
    print(f"{'clients x params':>18} | {'mode':>14} | {'round (s)':>9} | {'vs plain':>8} | {'upload/client (B)':>17} | {'vs plain':>8}")
    for row in results:
        base = row["plain"]
        for mode in modes:
            r = row[mode]
            print(f"{row['clients']:>8} x {row['params']:<7} | {mode:>14} | {r['round_s']:9.3f} | "
                  f"{r['round_s'] / base['round_s']:7.2f}x | {r['upload_bytes']:17.0f} | "
                  f"{r['upload_bytes'] / base['upload_bytes']:7.3f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
