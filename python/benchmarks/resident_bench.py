"""Sealroom's own cost of one vector FedAvg round, without Flower: N
resident client nodes, 3 helpers and a coordinator in this process on
loopback (mutual TLS), each client handing in a precomputed update
without waiting for its upload. Prints, per round, the wall time and the
CPU time of the whole process (every node's sharing, uploads, durable
records and the aggregation). It tells how much of a Flower round's
budget sealroom's machinery needs on this machine. Nothing is asserted.

    python python/benchmarks/resident_bench.py --clients 100 --params 100000 --rounds 4
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import sealroom


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    clip, max_weight = 1.0, 1000
    bits, _ = sealroom.fedavg_spec(args.clients, clip, max_weight)
    zeros = np.zeros(args.params)
    updates = [
        sealroom.encode_update(zeros, np.random.default_rng(i).normal(0, 0.05, args.params), 50, bits, clip,
                               max_weight)[0]
        for i in range(args.clients)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        fed = sealroom.LocalFederation(tmp + "/fed", clients=args.clients, min_clients=2, upload_window_ms=60_000)
        try:
            admin = sealroom.Admin(fed.admin_config)
            configs = [fed.client_config(i) for i in range(args.clients)]
            for config in configs:
                sealroom.resident_start(config)
            with ThreadPoolExecutor(max_workers=1) as pool:
                for r in range(1, args.rounds + 1):
                    cpu, wall = cpu_seconds(), time.perf_counter()
                    pending = pool.submit(admin.fedavg_round, "bench", r, args.params, bits, clip, max_weight,
                                          admin.clients, 120)
                    for config, update in zip(configs, updates):
                        sealroom.resident_contribute(config, update, "bench", r, bits, clip, max_weight, False)
                    pending.result()
                    print(f"{args.clients} clients x {args.params}: round {r}: wall {time.perf_counter() - wall:.3f} s, "
                          f"CPU {cpu_seconds() - cpu:.3f} s", flush=True)
        finally:
            fed.close()


if __name__ == "__main__":
    main()
