"""Flower integration: sealroom's secure aggregation in place of SecAgg+.

An existing Flower app switches by changing two lines::

    # client side
    app = ClientApp(client_fn=client_fn, mods=[sealroom_mod])         # was secaggplus_mod
    # server side
    workflow = DefaultWorkflow(fit_workflow=SealroomWorkflow("fed/admin.toml"))
                                                                       # was SecAggPlusWorkflow(...)

Each fit result goes through sealroom: the mod quantizes the client's delta
(its trained parameters minus the round's global parameters), weighted by
``min(num_examples, max_weight)`` — Flower's FedAvg weighting, with SecAgg+'s
``max_weight`` cap — and uploads secret shares straight to the helpers; the
reply to the Flower server carries ``num_examples`` and metrics, never
parameters. The workflow asks the sealroom coordinator for one round over the
selected clients and receives only the sum, which it turns into the weighted
average and hands to the strategy's ``aggregate_fit`` exactly as
``SecAggPlusWorkflow`` does. A client that drops out is simply not in the sum
(sealroom's inclusion rules; the round aborts below ``min_clients``).

Which sealroom client a Flower node is: its node config's ``sealroom-config``
(the path of its ``client-N.toml``), or the environment variable
``SEALROOM_CLIENT_CONFIG``, a path in which ``{partition_id}`` is replaced by
the node's ``partition-id`` (what simulations use).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from logging import INFO, WARNING
from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.common import Code, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.logger import log
from flwr.compat.common import recorddict_compat as compat
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp.grid import Grid

from . import Admin, ConfigError, RoundAborted, _native

__all__ = ["sealroom_mod", "SealroomWorkflow", "RECORD_KEY", "CONFIG_KEY", "ENV_CONFIG"]

#: The config record the workflow and the mod exchange.
RECORD_KEY = "sealroom"
#: The node-config key naming a Flower node's sealroom client config.
CONFIG_KEY = "sealroom-config"
#: The environment variable with a client config path template.
ENV_CONFIG = "SEALROOM_CLIENT_CONFIG"


def _client_config(ctxt: Context) -> str:
    node_config = ctxt.node_config
    if CONFIG_KEY in node_config:
        return str(node_config[CONFIG_KEY])
    template = os.environ.get(ENV_CONFIG)
    if template:
        return template.format(partition_id=node_config.get("partition-id"))
    raise ConfigError(
        f"this Flower node has no sealroom client config: set node config "
        f"'{CONFIG_KEY}' or the environment variable {ENV_CONFIG}"
    )


def _contribute(config: str, update: np.ndarray | None, settings, wait: bool) -> int:
    """Hands this round's encoded update (``None``: sit the round out) to
    this node's resident sealroom client: one long-lived client node per
    sealroom identity on this host, started on first use and kept (store
    open, mutual TLS connections up, watching the coordinator). Returns the
    bytes uploaded, or -1 when not waiting for the upload."""
    return _native.resident_contribute(
        config,
        update,
        str(settings["run"]),
        int(settings["round"]),
        int(settings["bits"]),
        float(settings["clip"]),
        int(settings["max_weight"]),
        wait,
        float(settings["timeout"]),
        settings.get("defences"),
    )


def _sit_out(config: str, settings) -> None:
    """Tells this node's sealroom client to sit the round out (its training
    failed), so the round need not wait for it until the upload window ends."""
    try:
        _contribute(config, None, settings, False)
    except Exception as e:  # the round goes on without this client either way
        log(WARNING, "sealroom sit-out failed (%s, reason %s)", type(e).__name__, getattr(e, "reason", "?"))


def _flatten(arrays: list[np.ndarray]) -> np.ndarray:
    if not arrays:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def sealroom_mod(msg: Message, ctxt: Context, call_next) -> Message:
    """Flower client mod: routes each fit result through sealroom's secure
    aggregation (the drop-in for ``secaggplus_mod``)."""
    records = msg.content.config_records
    if msg.metadata.message_type == MessageType.QUERY and RECORD_KEY in records:
        # The workflow asks which sealroom client this node is (once, before
        # its first round): start its resident node now, not in that round.
        config = _client_config(ctxt)
        name = _native.client_name(config)
        try:
            _native.resident_start(config)
        except Exception as e:  # the first contribution tries again
            log(WARNING, "sealroom resident client not started (%s, reason %s)",
                type(e).__name__, getattr(e, "reason", "?"))
        return Message(RecordDict({RECORD_KEY: ConfigRecord({"client": name})}), reply_to=msg)
    if msg.metadata.message_type != MessageType.TRAIN or RECORD_KEY not in records:
        return call_next(msg, ctxt)
    settings = records[RECORD_KEY]
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    global_flat = _flatten(parameters_to_ndarrays(fitins.parameters))
    config = _client_config(ctxt)
    out = call_next(msg, ctxt)
    if out.has_error():
        _sit_out(config, settings)
        return out
    fitres = compat.recorddict_to_fitres(out.content, keep_input=True)
    if fitres.status.code != Code.OK:
        _sit_out(config, settings)
        return out
    local_flat = _flatten(parameters_to_ndarrays(fitres.parameters))
    bits, clip, max_weight = int(settings["bits"]), float(settings["clip"]), int(settings["max_weight"])
    # With robust aggregation the helpers clip or rank the unweighted deltas.
    defences = settings.get("defences")
    weighted = not (defences and json.loads(str(defences)).get("robust"))
    # How many of this client's values were clipped stays here: it says
    # something about the private update (issue #12, finding 9).
    update, _clipped = _native.encode_update(
        global_flat, local_flat, int(fitres.num_examples), bits, clip, max_weight, weighted
    )
    # Without waiting, the reply leaves once the update is handed in; the
    # resident node uploads it in the background and sealroom's inclusion
    # set (not this reply) decides whether it counts.
    uploaded = _contribute(config, update, settings, bool(settings.get("wait", False)))
    del update, local_flat
    out_content = out.content
    # The Flower server never receives this client's parameters.
    for arr_record in out_content.array_records.values():
        arr_record.clear()
    out_content.config_records[RECORD_KEY] = ConfigRecord({"uploaded_bytes": int(uploaded)})
    return Message(out_content, reply_to=msg)


class SealroomWorkflow:
    """Flower fit workflow that aggregates through sealroom (the drop-in for
    ``SecAggPlusWorkflow``; use it as ``DefaultWorkflow(fit_workflow=...)``).

    Parameters
    ----------
    admin_config : path of the admin identity's config (``admin.toml``).
    clip : deltas (trained minus global parameters) are clipped to ±clip.
    max_weight : a client's weight is ``min(num_examples, max_weight)``.
    bits : signed bits per quantized delta; by default the most that keep the
        secure sum in a 32-bit ring for the selected clients (4 bytes per
        parameter on the wire, as a float32 update).
    timeout : seconds a round may take (the federation's upload window
        bounds how long it waits for a slow client).
    defences : input validity and robust aggregation inside sealroom's MPC
        engine (issue #15), signed into every round, e.g. ``{"l2_bound": 5.0,
        "robust": {"kind": "clip", "norm": 0.5}}`` (see
        :meth:`sealroom.Admin.fedavg_round`): the helpers leave out every
        update beyond a bound — its client then counts as a failure for the
        strategy, and the log names it with the bounds it failed — and clip,
        trim or Krum-select the rest. Default: none (SecAgg+'s behaviour:
        every update is summed as sent).
    wait_for_upload : whether each client's fit reply waits until the helpers
        have signed receipts for its shares (and reports the bytes uploaded).
        By default (``False``) the reply leaves once the update is handed to
        the node's resident sealroom client and the upload finishes in the
        background, overlapping the next client's work: the round ends no
        sooner either way (the workflow waits for sealroom's sum), and
        sealroom's inclusion set, not the reply, decides whose update is in
        the sum — a client whose upload fails is counted as a failure.
    """

    def __init__(
        self,
        admin_config: str | os.PathLike[str],
        *,
        clip: float = 1.0,
        max_weight: int = 1000,
        bits: int | None = None,
        timeout: float = 600.0,
        wait_for_upload: bool = False,
        defences: Mapping[str, Any] | None = None,
    ) -> None:
        self.admin = Admin(admin_config)
        self.defences = dict(defences) if defences is not None else None
        self.clip = float(clip)
        self.max_weight = int(max_weight)
        self.bits = bits
        self.timeout = float(timeout)
        self.wait_for_upload = bool(wait_for_upload)
        self._names: dict[int, str] = {}
        self._run = uuid.uuid4().hex[:12]
        #: Per round: bytes each client uploaded to the helpers, and the
        #: quantization step of the deltas (the error bound is half a step).
        self.uploads: dict[int, list[int]] = {}
        self.steps: dict[int, float] = {}
        #: Per round: each client whose update the helpers left out, with
        #: the checks it failed (with ``defences`` only).
        self.rejected: dict[int, dict[str, list[str]]] = {}

    def _identify(self, grid: Grid, node_ids: list[int], group: str) -> None:
        unknown = [n for n in node_ids if n not in self._names]
        if not unknown:
            return
        content = RecordDict({RECORD_KEY: ConfigRecord({"identity": True})})
        replies = grid.send_and_receive(
            [
                Message(content=content, dst_node_id=n, message_type=MessageType.QUERY, group_id=group)
                for n in unknown
            ],
            timeout=self.timeout,
        )
        for reply in replies:
            if reply.has_content() and RECORD_KEY in reply.content.config_records:
                name = reply.content.config_records[RECORD_KEY]["client"]
                self._names[reply.metadata.src_node_id] = cast(str, name)

    def __call__(self, grid: Grid, context: Context) -> None:
        if not isinstance(context, LegacyContext):
            raise TypeError(f"Expect a LegacyContext, but get {type(context).__name__}.")
        cfg = context.state.config_records[MAIN_CONFIGS_RECORD]
        current_round = cast(int, cfg[Key.CURRENT_ROUND])
        parameters = compat.arrayrecord_to_parameters(
            context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
        )
        instructions = context.strategy.configure_fit(current_round, parameters, context.client_manager)
        if not instructions:
            log(INFO, "configure_fit: no clients selected, cancel")
            return
        log(
            INFO,
            "configure_fit: strategy sampled %s clients (out of %s)",
            len(instructions),
            context.client_manager.num_available(),
        )
        proxies = {proxy.node_id: proxy for proxy, _ in instructions}
        self._identify(grid, list(proxies), str(current_round))
        selected = [(p, ins) for p, ins in instructions if p.node_id in self._names]
        if len(selected) < len(instructions):
            log(WARNING, "%s selected nodes did not say which sealroom client they are", len(instructions) - len(selected))
        if not selected:
            return

        global_arrays = parameters_to_ndarrays(parameters)
        global_flat = _flatten(global_arrays)
        bits = self.bits
        if bits is None:
            bits, _ = _native.fedavg_spec(len(selected), self.clip, self.max_weight)
        settings = {
            "run": self._run,
            "round": current_round,
            "bits": int(bits),
            "clip": self.clip,
            "max_weight": self.max_weight,
            "timeout": self.timeout,
            "wait": self.wait_for_upload,
        }
        if self.defences is not None:
            settings["defences"] = json.dumps(self.defences)
        names = [self._names[p.node_id] for p, _ in selected]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(
                self.admin.fedavg_round,
                self._run,
                current_round,
                int(global_flat.size),
                int(bits),
                self.clip,
                self.max_weight,
                names,
                self.timeout,
                self.defences,
            )
            messages = []
            for proxy, fitins in selected:
                content = compat.fitins_to_recorddict(fitins, True)
                content.config_records[RECORD_KEY] = ConfigRecord(dict(settings))
                messages.append(
                    Message(
                        content=content,
                        dst_node_id=proxy.node_id,
                        message_type=MessageType.TRAIN,
                        group_id=str(current_round),
                    )
                )
            replies = list(grid.send_and_receive(messages, timeout=self.timeout))
            try:
                total, included, round_id, total_weight, *rest = pending.result()
            except RoundAborted as e:
                # Too few clients uploaded (sealroom's rule: no sum below
                # min_clients): this round leaves the model unchanged, as a
                # halted SecAgg+ round does. The evidence is in the audit log.
                log(WARNING, "sealroom round %s aborted (%s): the model is unchanged this round",
                    e.round_id, e.reason)
                return

        rejected: dict[str, list[str]] = rest[0] if rest else {}
        self.rejected[current_round] = rejected
        for name, checks in rejected.items():
            log(WARNING, "sealroom round %s: the helpers left out %s's update (beyond %s)",
                round_id, name, ", ".join(checks))
        included_names = set(included) - set(rejected)
        results: list[tuple] = []
        failures: list = []
        uploads = []
        for reply in replies:
            proxy = proxies.get(reply.metadata.src_node_id)
            if proxy is None:
                continue
            if not reply.has_content():
                failures.append(Exception(reply.error))
                continue
            fitres = compat.recorddict_to_fitres(reply.content, keep_input=False)
            record = reply.content.config_records.get(RECORD_KEY)
            if record is not None and int(record["uploaded_bytes"]) >= 0:
                uploads.append(int(record["uploaded_bytes"]))
            if fitres.status.code == Code.OK and self._names.get(proxy.node_id) in included_names:
                results.append((proxy, fitres))
            else:
                failures.append((proxy, fitres))
        self.uploads[current_round] = uploads
        new_flat = _native.apply_sum(global_flat, total, int(bits), self.clip, self.max_weight)
        self.steps[current_round] = _native.delta_step(int(bits), self.clip)
        new_arrays = []
        offset = 0
        for a in global_arrays:
            new_arrays.append(new_flat[offset : offset + a.size].reshape(a.shape).astype(a.dtype))
            offset += a.size
        aggregated = ndarrays_to_parameters(new_arrays)
        for _, fitres in results:
            fitres.parameters = aggregated
        log(
            INFO,
            "aggregate_fit: sealroom round %s included %s of %s clients (total weight %s); %s failures",
            round_id,
            len(included),
            len(selected),
            total_weight,
            len(failures),
        )
        parameters_aggregated, metrics_aggregated = context.strategy.aggregate_fit(
            current_round, results, failures
        )
        if parameters_aggregated:
            context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
                parameters_aggregated, True
            )
            context.history.add_metrics_distributed_fit(
                server_round=current_round, metrics=metrics_aggregated
            )
