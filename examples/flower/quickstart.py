import os, tempfile, numpy as np, sealroom
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.simulation import run_simulation
from sealroom.flower import SealroomWorkflow, sealroom_mod

fed = sealroom.LocalFederation(tempfile.mkdtemp(), clients=3)  # a new federation: coordinator + 3 helpers, mutual TLS
os.environ["SEALROOM_CLIENT_CONFIG"] = os.path.join(fed.dir, "client-{partition_id}.toml")

class Model(NumPyClient):
    def get_parameters(self, config): return [np.zeros(1000, np.float32)]
    def fit(self, params, config): return [params[0] + 0.01], 100, {}

client_app = ClientApp(client_fn=lambda context: Model().to_client(), mods=[sealroom_mod])  # was: secaggplus_mod
server_app = ServerApp()

@server_app.main()
def main(grid, context):
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=3), strategy=FedAvg(fraction_evaluate=0))
    DefaultWorkflow(fit_workflow=SealroomWorkflow(fed.admin_config))(grid, legacy)  # was: SecAggPlusWorkflow(...)

run_simulation(server_app, client_app, num_supernodes=3)
fed.close()
