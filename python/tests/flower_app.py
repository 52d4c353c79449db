"""A Flower app with a numpy "model" (deterministic updates), run three
ways from the same code: plain FedAvg, Flower's SecAgg+, and sealroom.
Used by test_flower.py and benchmarks/flower_bench.py."""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Context
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.client.mod import secaggplus_mod
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import ServerApp

SHAPES = {"small": [(10, 50), (500,)]}


def shapes_for(n_params: int) -> list[tuple[int, ...]]:
    """Two arrays (a matrix and a bias-like vector) with n_params in all."""
    rows = max(1, n_params // 1000)
    matrix = (rows, 900) if rows * 900 < n_params else (1, n_params // 2)
    rest = n_params - matrix[0] * matrix[1]
    return [matrix, (rest,)]


def local_update(partition: int, server_round: int, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """What client `partition` trains in `server_round`: the global arrays
    plus a deterministic step (float32, as a real model's)."""
    rng = np.random.default_rng(1000 * server_round + partition)
    return [(a + rng.normal(0.0, 0.05, a.shape)).astype(np.float32) for a in arrays]


#: The partition whose update is poisoned in mode 'sealroom-defended'.
POISONER = 3
#: That mode's defences: a hard L2 bound far above an honest update's norm
#: (about 1.6 here) and far below the poisoned one's (about 32).
DEFENCES = {"l2_bound": 5.0}


def poisoned_update(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """A scaled update: every value moved by ±1 (the workflow's clip)."""
    return [
        (a + np.where(np.arange(a.size) % 2 == 0, 1.0, -1.0).reshape(a.shape)).astype(np.float32)
        for a in arrays
    ]


def num_examples(partition: int) -> int:
    return 30 + 17 * partition


class NumpyClient(NumPyClient):
    def __init__(self, partition: int, shapes, poison: bool = False):
        self.partition = partition
        self.shapes = shapes
        self.poison = poison

    def get_parameters(self, config):
        return [np.zeros(s, dtype=np.float32) for s in self.shapes]

    def fit(self, parameters, config):
        server_round = int(config.get("server_round", 0))
        if self.poison:
            return poisoned_update(parameters), num_examples(self.partition), {}
        return local_update(self.partition, server_round, parameters), num_examples(self.partition), {}


def fit_config(server_round: int):
    return {"server_round": server_round}


class CapturingFedAvg(FedAvg):
    """FedAvg that records, per round, the parameters it sent and the
    aggregate it produced (the ServerApp runs in the test's process)."""

    def __init__(self, record: dict, **kwargs):
        super().__init__(**kwargs)
        self.record = record

    def configure_fit(self, server_round, parameters, client_manager):
        from flwr.common import parameters_to_ndarrays

        self.record.setdefault("sent", {})[server_round] = parameters_to_ndarrays(parameters)
        self.record.setdefault("started", {})[server_round] = time.perf_counter()
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round, results, failures):
        from flwr.common import parameters_to_ndarrays

        out = super().aggregate_fit(server_round, results, failures)
        self.record.setdefault("finished", {})[server_round] = time.perf_counter()
        self.record.setdefault("included", {})[server_round] = len(results)
        if out[0] is not None:
            self.record.setdefault("aggregated", {})[server_round] = parameters_to_ndarrays(out[0])
        return out


def make_apps(mode: str, shapes, rounds: int, record: dict, admin_config: str | None = None,
              n_clients: int = 2):
    """(server_app, client_app) for mode 'plain', 'secaggplus', 'sealroom',
    'sealroom-wait' (each fit reply waits for its upload's receipts) or
    'sealroom-defended' (partition POISONER poisons its update; the workflow
    has DEFENCES)."""
    mods = []
    if mode == "secaggplus":
        mods = [secaggplus_mod]
    elif mode.startswith("sealroom"):
        from sealroom.flower import sealroom_mod

        mods = [sealroom_mod]

    def client_fn(context: Context):
        partition = int(context.node_config["partition-id"])
        poison = mode == "sealroom-defended" and partition == POISONER
        return NumpyClient(partition, shapes, poison).to_client()

    client_app = ClientApp(client_fn=client_fn, mods=mods)
    server_app = ServerApp()

    @server_app.main()
    def main(grid, context):
        strategy = CapturingFedAvg(
            record,
            fraction_evaluate=0.0,
            on_fit_config_fn=fit_config,
            initial_parameters=None,
        )
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
        if mode.startswith("sealroom"):
            from sealroom.flower import SealroomWorkflow

            workflow = SealroomWorkflow(admin_config, clip=1.0, max_weight=1000,
                                        wait_for_upload=mode == "sealroom-wait",
                                        defences=DEFENCES if mode == "sealroom-defended" else None)
            record["workflow"] = workflow
            fit = workflow
        elif mode == "secaggplus":
            fit = SecAggPlusWorkflow(num_shares=min(n_clients, 5) if n_clients > 3 else n_clients,
                                     reconstruction_threshold=max(2, min(n_clients, 5) // 2 + 1) if n_clients > 3 else 2,
                                     max_weight=1000)
        else:
            fit = None
        DefaultWorkflow(fit_workflow=fit)(grid, legacy)

    return server_app, client_app
