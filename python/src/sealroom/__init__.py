"""sealroom: secure multi-party computation for federated learning and joint
analytics, from Python.

Everything here wraps the Rust library (``sealroom._native``); nothing is
computed twice. Long operations release the GIL, can be interrupted with
Ctrl-C (``KeyboardInterrupt``) and take a ``timeout`` in seconds.

* :class:`Admin` — start rounds, train on the clients' tables, ask joint SQL
  queries (a pandas DataFrame back), verify audit logs.
* :class:`Client` — a client node whose input for a framework's rounds comes
  from a Python callable returning a numpy array.
* :mod:`sealroom.flower` — ``sealroom_mod`` and ``SealroomWorkflow``, the
  drop-in replacement for Flower's ``secaggplus_mod`` and
  ``SecAggPlusWorkflow``.
* :class:`LocalFederation` — a coordinator and helpers on loopback, for
  tests and demos.

Every exception derives from :class:`SealroomError` and carries ``reason``,
the project's code for what went wrong (e.g. ``not_enough_clients``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _native
from ._native import (
    Cancelled,
    ConfigError,
    DataError,
    LocalFederation,
    RequestRefused,
    RoundAborted,
    SealroomError,
    Timeout,
    apply_sum,
    client_name,
    delta_step,
    encode_update,
    fedavg_spec,
    resident_hosts,
    resident_start,
    resident_stop,
)

__all__ = [
    "Admin",
    "Client",
    "LocalFederation",
    "RoundOutcome",
    "SealroomError",
    "ConfigError",
    "RequestRefused",
    "RoundAborted",
    "DataError",
    "Cancelled",
    "Timeout",
    "encode_update",
    "apply_sum",
    "fedavg_spec",
    "delta_step",
    "client_name",
    "resident_contribute",
    "resident_start",
    "resident_hosts",
    "resident_stop",
]

__version__ = _native.__version__

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class RoundOutcome:
    """What a round published: its id, ``status`` (``completed`` or
    ``aborted``), the abort ``reason`` code and ``detail``, the indices of
    the included clients, the revealed sum and the latency."""

    round_id: int
    status: str
    reason: str
    detail: str
    included_clients: list[int]
    values: np.ndarray
    duration_ms: int


class Admin:
    """An admin identity (``admin.toml`` from ``sealroom init``)."""

    def __init__(self, config: PathLike) -> None:
        self._native = _native.Admin(os.fspath(config))

    @property
    def clients(self) -> list[str]:
        """The federation's client names."""
        return self._native.clients

    def start_round(
        self,
        task: str = "synthetic",
        dim: int = 0,
        clients: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> RoundOutcome:
        """Runs one round of ``task`` and returns its outcome (an aborted
        round is returned, with ``status == "aborted"``, not raised)."""
        out = json.loads(
            self._native.start_round(task, dim, list(clients) if clients else None, timeout)
        )
        out["values"] = np.asarray(out["values"], dtype=np.float64)
        return RoundOutcome(**out)

    def train(
        self,
        spec: Mapping[str, Any] | PathLike,
        clients: Sequence[str] | None = None,
        test: PathLike | None = None,
        export: PathLike | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Trains on the clients' own tables from a training spec (a dict,
        or a path to its JSON file; see ``docs/analytics.md``). ``test`` is a
        CSV of the admin's own held-out rows, ``export`` a directory to
        write ``model.safetensors`` and ``model.json`` into. Returns the
        report (a dict, as ``sealroom train --json`` prints it)."""
        if isinstance(spec, Mapping):
            text = json.dumps(spec)
        else:
            text = Path(spec).read_text()
        report = self._native.train(
            text,
            list(clients) if clients else None,
            os.fspath(test) if test is not None else None,
            os.fspath(export) if export is not None else None,
            timeout,
        )
        return json.loads(report)

    def query(
        self,
        sql: str,
        domains: Mapping[str, Sequence[str]] | None = None,
        min_rows: int = 5,
        min_clients: int | None = None,
        clients: Sequence[str] | None = None,
        timeout: float | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        dp: tuple[float, float] | None = None,
    ):
        """Asks a joint SQL question; returns a pandas DataFrame with one row
        per group. A suppressed (or undefined) cell is a missing value, and
        the ``reason`` column says why; ``adjusted`` counts the rows of a
        released cell whose values were clamped to ``bounds``. ``df.attrs``
        holds the rounds, the included clients and the bounds applied.

        ``bounds`` maps every column used in arithmetic or inside an
        aggregate to its ``(lo, hi)``: each client clamps its values to them,
        so no single row dominates a statistic (required by the planner).

        ``dp=(epsilon, delta)`` makes the answer differentially private: one
        MPC engine round whose every value carries binomial noise the helpers
        generate inside the engine, ``(epsilon, delta)``-DP per row of a
        client's table. Each client charges it to its table's privacy budget
        (``[privacy_budget.<table>]`` in its config) before it answers and
        refuses when that would overspend. ``df.attrs["privacy"]`` then holds
        ``epsilon``, ``delta`` and the mechanism; the values are estimates."""
        import pandas as pd

        spec = {
            "sql": sql,
            "domains": {k: list(v) for k, v in (domains or {}).items()},
            "min_rows": min_rows,
            "min_clients": min_clients if min_clients is not None else self._native.min_clients,
            "bounds": {k: [float(lo), float(hi)] for k, (lo, hi) in (bounds or {}).items()},
        }
        if dp is not None:
            epsilon, delta = dp
            spec["dp"] = {"epsilon": float(epsilon), "delta": float(delta)}
        run = json.loads(
            self._native.query(json.dumps(spec), list(clients) if clients else None, timeout)
        )
        result = run["result"]
        records = []
        for row in result["rows"]:
            record: dict[str, Any] = {}
            for name, key in zip(result["group_columns"], row["group"]):
                record[name] = key["value"] if isinstance(key, dict) else "(other)"
            reasons = []
            for name, cell in zip(result["columns"], row["cells"]):
                if "value" in cell:
                    record[name] = cell["value"]
                    continue
                record[name] = np.nan
                if "suppressed" in cell:
                    why = dict(cell["suppressed"]["reason"])
                    threshold = why.pop("threshold")
                    limits = ", ".join(f"{k}={v}" for k, v in why.items())
                    reasons.append(f"suppressed: {threshold} ({limits})")
                else:
                    reasons.append(f"null: {cell['null']['reason']}")
            record["reason"] = "; ".join(dict.fromkeys(reasons)) or None
            record["adjusted"] = row.get("adjusted")
            records.append(record)
        columns = list(result["group_columns"]) + list(result["columns"]) + ["reason", "adjusted"]
        frame = pd.DataFrame.from_records(records, columns=columns)
        frame.attrs.update(
            counts_round=run["counts_round"],
            stats_round=run["stats_round"],
            included=run["included"],
            durations_ms=run["durations_ms"],
            bounds={b["column"]: (b["lo"], b["hi"]) for b in result.get("bounds", [])},
            privacy=result.get("privacy"),
        )
        return frame

    def fedavg_round(
        self,
        run: str,
        round: int,
        n_params: int,
        bits: int,
        clip: float,
        max_weight: int,
        clients: Sequence[str],
        timeout: float | None = None,
        defences: Mapping[str, Any] | None = None,
    ) -> Any:
        """One vector FedAvg round over ``clients``: returns the revealed
        ``(sum, included, round_id, total_weight)``; apply it with
        :func:`apply_sum`.

        ``defences`` (issue #15) has the helpers check every update inside
        the MPC engine and/or aggregate robustly: ``{"l2_bound": B,
        "linf_bound": L, "robust": {"kind": "clip", "norm": C}}`` (every key
        optional; ``robust`` may also be ``{"kind": "trimmed_mean", "beta":
        β}``, ``{"kind": "median"}`` or ``{"kind": "multi_krum",
        "byzantine": F, "selected": M}``; clip and multi-Krum need
        ``l2_bound``). Every client must then contribute with the same
        ``defences`` (and, with ``robust``, encode with ``weighted=False``).
        With ``defences`` the result has a fifth element, ``rejected``: each
        included client whose update the helpers left out, with the checks
        it failed (``"l2"``, ``"linf"``, ``"weight"``); ``total_weight``
        counts the updates averaged."""
        total, included, round_id, total_weight, rejected = self._native.fedavg_round(
            run, round, n_params, bits, clip, max_weight, list(clients), timeout,
            _defences_json(defences),
        )
        if defences is None:
            return total, included, round_id, total_weight
        return total, included, round_id, total_weight, rejected

    def verify_audit(self, node_config: PathLike, timeout: float | None = None) -> dict[str, Any]:
        """Verifies a coordinator's or helper's audit log (hash chain,
        signatures, no gaps); raises :class:`DataError` with reason
        ``audit_tampered`` naming the first bad entry."""
        return json.loads(self._native.verify_audit(os.fspath(node_config), timeout))

    def __repr__(self) -> str:
        return repr(self._native)


def resident_contribute(
    config: PathLike,
    update: np.ndarray | None,
    run: str,
    round: int,
    bits: int,
    clip: float,
    max_weight: int,
    wait: bool = True,
    timeout: float = 60.0,
    defences: Mapping[str, Any] | None = None,
) -> int:
    """Hands ``update`` (from :func:`encode_update`; ``None`` sits the round
    out) for the vector FedAvg round (``run``, ``round``, with the round's
    ``defences``, see :meth:`Admin.fedavg_round`) to this identity's
    resident client node on this host, starting it on first use. With
    ``wait``, returns the bytes uploaded once every helper has signed a
    receipt; without, returns -1 once the update is handed in."""
    if update is not None:
        update = np.ascontiguousarray(update, dtype=np.float64)
    return _native.resident_contribute(
        os.fspath(config), update, run, round, bits, clip, max_weight, wait, timeout,
        _defences_json(defences),
    )


def _defences_json(defences: Mapping[str, Any] | None) -> str | None:
    """The JSON form of a round's defences (``None``: none)."""
    return None if defences is None else json.dumps(dict(defences))


class Client:
    """A client node run from Python (``client-N.toml``).

    ``input``, if given, is called for each vector FedAvg round this client
    is invited to, with a dict (``round_id``, ``run``, ``round``,
    ``n_params``, ``bits``, ``clip``, ``max_weight``, ``vector_len``,
    ``defences``: the round's JSON defences or ``None``), and returns the
    round's vector as a 1-D float64 numpy array (for FedAvg:
    :func:`encode_update`, with ``weighted=False`` when the defences name
    ``robust``). The config's tables answer queries and table
    trainings as ``sealroom node`` would.
    """

    def __init__(self, config: PathLike, input: Callable[[dict[str, Any]], np.ndarray] | None = None):
        self._native = _native.Client(os.fspath(config), input)

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def running(self) -> bool:
        return self._native.running

    def start(self, timeout: float | None = None) -> "Client":
        """Starts the node (returns ``self``)."""
        self._native.start(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the node."""
        self._native.stop(timeout)

    def next_event(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """The next event (``uploaded``, ``skipped`` with its ``reason``,
        ``upload_failed``, ``outcome``), or ``None`` after ``timeout``."""
        event = self._native.next_event(timeout)
        return json.loads(event) if event is not None else None

    def contribute(
        self,
        update: np.ndarray,
        run: str,
        round: int,
        bits: int,
        clip: float,
        max_weight: int,
        timeout: float = 60.0,
        defences: Mapping[str, Any] | None = None,
    ) -> int:
        """Answers exactly one vector FedAvg round (``run``, ``round``, with
        the round's ``defences``, see :meth:`Admin.fedavg_round`) with
        ``update`` (from :func:`encode_update`), then stops; returns the
        bytes uploaded."""
        return self._native.contribute(
            np.ascontiguousarray(update, dtype=np.float64), run, round, bits, clip, max_weight, timeout,
            _defences_json(defences),
        )

    def __enter__(self) -> "Client":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return repr(self._native)
