"""A real Flower simulation (flwr's simulation engine, Ray) through real
sealroom nodes on loopback: each round's aggregated model must equal
Flower's own plain FedAvg of the same client updates within the
quantization bound (half a step per parameter), and the Flower server never
receives a client's parameters. With defences, a poisoned update is left
out inside sealroom's MPC engine and the model is Flower's FedAvg of the
honest updates."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("mode", ["sealroom", "sealroom-wait", "sealroom-defended"])
def test_flower_simulation_through_sealroom_matches_flower_fedavg(tmp_path, mode):
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy.aggregate import aggregate
    from flwr.simulation import run_simulation

    import sealroom
    from flower_app import POISONER, local_update, make_apps, num_examples

    n_clients, rounds = 4, 3
    shapes = [(10, 50), (500,)]
    fed = sealroom.LocalFederation(str(tmp_path / "fed"), clients=n_clients, min_clients=2,
                                   upload_window_ms=60_000)
    try:
        # Flower's Ray workers inherit the environment: they find the test
        # app and each node's sealroom client config from it.
        os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
        os.environ["SEALROOM_CLIENT_CONFIG"] = str(Path(fed.dir) / "client-{partition_id}.toml")
        record: dict = {}
        server_app, client_app = make_apps(mode, shapes, rounds, record, fed.admin_config)
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=n_clients,
            backend_config={"client_resources": {"num_cpus": 1}},
        )
    finally:
        fed.close()

    workflow = record["workflow"]
    assert sorted(record["aggregated"]) == list(range(1, rounds + 1)), record.keys()
    for server_round in range(1, rounds + 1):
        sent = record["sent"][server_round]
        # Flower's own FedAvg aggregation of the very updates the clients
        # sent (with defences: of the honest ones; the poisoned update is
        # left out inside the engine, named with the bound it failed).
        honest = [p for p in range(n_clients) if mode != "sealroom-defended" or p != POISONER]
        results = [(local_update(p, server_round, sent), num_examples(p)) for p in honest]
        expected = aggregate(results)
        got = record["aggregated"][server_round]
        step = workflow.steps[server_round]
        for e, g in zip(expected, got):
            err = np.max(np.abs(np.asarray(g, np.float64) - np.asarray(e, np.float64)))
            # Half a quantization step, plus float32 rounding of the arrays.
            assert err <= step / 2 + 1e-6, (server_round, err, step)
        assert record["included"][server_round] == len(honest)
        if mode == "sealroom-defended":
            assert workflow.rejected[server_round] == {f"client-{POISONER}": ["l2"]}
            continue
        assert workflow.rejected[server_round] == {}
        if mode == "sealroom":
            # Replies left before the uploads ended: no sizes to check.
            assert workflow.uploads[server_round] == []
            continue
        # Every client uploaded shares of one 4-byte element per parameter
        # (plus the weight and a few seeds): the size of a float32 update.
        n_params = sum(int(np.prod(s)) for s in shapes)
        uploads = workflow.uploads[server_round]
        assert len(uploads) == n_clients
        assert all(4 * n_params <= u <= 4 * n_params * 1.1 for u in uploads), uploads
