"""A Flower app with a PyTorch model on scikit-learn's digits data (shipped
inside the scikit-learn package, so it runs offline), aggregated by
sealroom instead of SecAgg+. Needs `pip install torch scikit-learn
"flwr[simulation]==1.41.0"` and the sealroom package; CI does not install
PyTorch, so this example is documented (docs/python.md), not tested.

    python examples/flower/pytorch_digits.py

The federation (its CA, the nodes' keys and stores) is a throwaway one in a
fresh temporary directory, removed at the end: sealroom refuses to write a
federation over an existing one's keys, so a fixed directory would let the
example run only once.
"""

import os
import tempfile

import numpy as np
import torch
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp import ServerApp
from flwr.simulation import run_simulation
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import sealroom
from sealroom.flower import SealroomWorkflow, sealroom_mod

CLIENTS = 5
digits = load_digits()
x_all = (digits.data / 16.0).astype(np.float32)
x_train, x_test, y_train, y_test = train_test_split(x_all, digits.target, test_size=0.25, random_state=0)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def get_weights(net):
    return [p.detach().cpu().numpy() for p in net.state_dict().values()]


def set_weights(net, weights):
    net.load_state_dict({k: torch.tensor(w) for k, w in zip(net.state_dict().keys(), weights)})


class DigitsClient(NumPyClient):
    def __init__(self, partition: int):
        rows = np.arange(len(x_train)) % CLIENTS == partition
        self.x = torch.tensor(x_train[rows])
        self.y = torch.tensor(y_train[rows])
        self.net = model()

    def get_parameters(self, config):
        return get_weights(self.net)

    def fit(self, parameters, config):
        set_weights(self.net, parameters)
        optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1)
        for _ in range(2):
            for start in range(0, len(self.x), 32):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(
                    self.net(self.x[start : start + 32]), self.y[start : start + 32]
                )
                loss.backward()
                optimizer.step()
        return get_weights(self.net), len(self.x), {}


def evaluate(server_round, parameters, config):
    net = model()
    set_weights(net, parameters)
    with torch.no_grad():
        logits = net(torch.tensor(x_test))
        loss = float(torch.nn.functional.cross_entropy(logits, torch.tensor(y_test)))
    accuracy = float((logits.argmax(1).numpy() == y_test).mean())
    print(f"round {server_round}: test loss {loss:.3f}, test accuracy {accuracy:.3f}")
    return loss, {"accuracy": accuracy}


workdir = tempfile.TemporaryDirectory(prefix="sealroom-digits-")
fed = sealroom.LocalFederation(os.path.join(workdir.name, "fed"), clients=CLIENTS)
os.environ["SEALROOM_CLIENT_CONFIG"] = os.path.join(fed.dir, "client-{partition_id}.toml")
client_app = ClientApp(
    client_fn=lambda context: DigitsClient(int(context.node_config["partition-id"])).to_client(),
    mods=[sealroom_mod],
)
server_app = ServerApp()


@server_app.main()
def main(grid, context):
    strategy = FedAvg(fraction_evaluate=0.0, evaluate_fn=evaluate,
                      initial_parameters=None, min_available_clients=CLIENTS)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=10), strategy=strategy)
    DefaultWorkflow(fit_workflow=SealroomWorkflow(fed.admin_config, clip=2.0))(grid, legacy)


try:
    run_simulation(server_app, client_app, num_supernodes=CLIENTS)
finally:
    fed.close()
    workdir.cleanup()
