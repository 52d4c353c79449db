"""Admin and Client against real nodes on loopback (mutual TLS): vector
FedAvg from Python callables against numpy, joint SQL into pandas against
pandas over the pooled rows, typed errors, timeouts, audit verification."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest

import sealroom
from conftest import EXAMPLES, add_table

N_PARAMS = 257
BITS, CLIP, MAX_WEIGHT = 16, 1.0, 1000


def local_update(i: int, global_params: np.ndarray) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(100 + i)
    return global_params + rng.normal(0, 0.05, global_params.size), 20 + 7 * i


@pytest.fixture(scope="module")
def salaries(federation, tmp_path_factory):
    """Client i holds one company's salary table (two CSV files, one SQLite)."""
    data = tmp_path_factory.mktemp("salaries")
    entries = [
        ("acme.csv", 'kind = "csv"'),
        ("globex.csv", 'kind = "csv"'),
        ("initech.sqlite", 'kind = "sqlite"\ntable = "salaries"'),
    ]
    for i, (file, kind) in enumerate(entries):
        shutil.copy(EXAMPLES / "salaries" / file, data / file)
        add_table(federation.client_config(i), "salaries", f'{kind}\npath = "{data / file}"')
    return data


def test_vector_fedavg_from_python_callables_matches_numpy(federation, salaries):
    admin = sealroom.Admin(federation.admin_config)
    global_params = np.linspace(-0.5, 0.5, N_PARAMS)
    calls = []

    def make_input(i):
        def input_fn(round_info):
            calls.append((i, round_info["round"], round_info["vector_len"]))
            if i == 2:
                raise ValueError("secret patient 42 has value 0.123")
            local, n = local_update(i, global_params)
            update, _ = sealroom.encode_update(global_params, local, n, BITS, CLIP, MAX_WEIGHT)
            return update

        return input_fn

    clients = [sealroom.Client(federation.client_config(i), input=make_input(i)).start() for i in range(3)]
    try:
        total, included, round_id, total_weight = admin.fedavg_round(
            "test-run", 1, N_PARAMS, BITS, CLIP, MAX_WEIGHT, admin.clients, timeout=60
        )
        # Client 2's callable raised: it sat the round out, naming only the type.
        skipped = None
        for _ in range(50):
            event = clients[2].next_event(timeout=0.2)
            if event and event["kind"] == "skipped" and event["round_id"] == round_id:
                skipped = event
                break
        assert skipped is not None
        assert "ValueError" in skipped["reason"]
        assert "secret" not in skipped["reason"] and "0.123" not in skipped["reason"]
    finally:
        for c in clients:
            c.stop()
    assert included == ["client-0", "client-1"]
    assert total_weight == 20 + 27
    assert sorted(set((i, r) for i, r, _ in calls)) == [(0, 1), (1, 1), (2, 1)]
    assert all(n == N_PARAMS + 1 for _, _, n in calls)
    secure = sealroom.apply_sum(global_params, total, BITS, CLIP, MAX_WEIGHT)
    # numpy's weighted FedAvg of the same local models.
    locals_ = [local_update(i, global_params) for i in range(2)]
    weights = np.array([n for _, n in locals_], dtype=np.float64)
    plain = sum(w * l for w, (l, _) in zip(weights, locals_)) / weights.sum()
    step = sealroom.delta_step(BITS, CLIP)
    assert np.max(np.abs(secure - plain)) <= step / 2 + 1e-12
    assert np.max(np.abs(secure - plain)) > 0  # quantized, not a copy


def test_defences_leave_a_poisoned_update_out_or_clip_it_inside_the_engine(federation):
    """Issue #15 from Python: client 2 sends a scaled update (every delta at
    the clip, the largest weight). With an L2 bound the helpers leave it out
    inside the MPC engine and name it; with clipping it is kept but scaled,
    so the model moves by at most the clip norm; without defences it drags
    the model along."""
    admin = sealroom.Admin(federation.admin_config)
    global_params = np.linspace(-0.5, 0.5, N_PARAMS)
    poison = global_params + np.where(np.arange(N_PARAMS) % 2 == 0, CLIP, -CLIP)

    def make_input(i):
        def input_fn(round_info):
            defences = json.loads(round_info["defences"] or "{}")
            local, n = (poison, MAX_WEIGHT) if i == 2 else local_update(i, global_params)
            update, _ = sealroom.encode_update(global_params, local, n, BITS, CLIP, MAX_WEIGHT,
                                               weighted="robust" not in defences)
            return update

        return input_fn

    bounded = {"l2_bound": 4.0}
    clipped = {"l2_bound": 20.0, "robust": {"kind": "clip", "norm": 0.5}}
    clients = [sealroom.Client(federation.client_config(i), input=make_input(i)).start() for i in range(3)]
    try:
        rounds = [
            admin.fedavg_round("defended", r, N_PARAMS, BITS, CLIP, MAX_WEIGHT, admin.clients,
                               timeout=60, defences=defences)
            for r, defences in [(1, bounded), (2, clipped), (3, None)]
        ]
    finally:
        for c in clients:
            c.stop()
    (total, included, _, total_weight, rejected), clip_round, plain_round = rounds
    assert included == ["client-0", "client-1", "client-2"]
    assert rejected == {"client-2": ["l2"]}
    assert total_weight == 20 + 27
    secure = sealroom.apply_sum(global_params, total, BITS, CLIP, MAX_WEIGHT)
    locals_ = [local_update(i, global_params) for i in range(2)]
    weights = np.array([n for _, n in locals_], dtype=np.float64)
    honest = sum(w * l for w, (l, _) in zip(weights, locals_)) / weights.sum()
    assert np.max(np.abs(secure - honest)) <= sealroom.delta_step(BITS, CLIP) / 2 + 1e-12

    assert clip_round[1] == included and clip_round[4] == {}
    moved = sealroom.apply_sum(global_params, clip_round[0], BITS, CLIP, MAX_WEIGHT) - global_params
    assert np.linalg.norm(moved) <= 0.5 + 1e-9, np.linalg.norm(moved)
    assert len(plain_round) == 4  # without defences: (sum, included, round_id, total_weight)
    dragged = sealroom.apply_sum(global_params, plain_round[0], BITS, CLIP, MAX_WEIGHT) - global_params
    assert np.linalg.norm(dragged) > 10, np.linalg.norm(dragged)


def pooled_salaries(data) -> pd.DataFrame:
    frames = [pd.read_csv(data / "acme.csv"), pd.read_csv(data / "globex.csv")]
    with sqlite3.connect(data / "initech.sqlite") as conn:
        frames.append(pd.read_sql("SELECT * FROM salaries", conn))
    return pd.concat(frames, ignore_index=True)


def test_query_returns_a_dataframe_matching_pandas_over_the_pooled_rows(federation, salaries):
    admin = sealroom.Admin(federation.admin_config)
    clients = [sealroom.Client(federation.client_config(i)).start() for i in range(3)]
    try:
        df = admin.query(
            "SELECT dept, COUNT(*), AVG(salary) FROM salaries GROUP BY dept",
            domains={"dept": ["eng", "sales", "ops", "hr", "legal"]},
            bounds={"salary": (0, 1_000_000)},
            timeout=60,
        )
    finally:
        for c in clients:
            c.stop()
    assert list(df.columns[:1]) == ["dept"] and list(df.columns[-2:]) == ["reason", "adjusted"]
    assert sorted(df.attrs["included"]) == ["client-0", "client-1", "client-2"]
    pooled = pooled_salaries(salaries)
    expected = pooled.groupby("dept")["salary"].agg(["size", "mean"])
    count_col, avg_col = df.columns[1], df.columns[2]
    for _, row in df.iterrows():
        if row["dept"] in ("eng", "sales", "ops", "hr"):
            assert row[count_col] == expected.loc[row["dept"], "size"]
            assert abs(row[avg_col] - expected.loc[row["dept"], "mean"]) < 1e-6
            assert pd.isna(row["reason"])
    legal = df[df["dept"] == "legal"].iloc[0]
    assert np.isnan(legal[avg_col]) and np.isnan(legal[count_col])
    assert legal["reason"].startswith("suppressed: ")


def test_a_dp_query_is_noised_and_charged_to_every_clients_budget(federation, salaries):
    # Each client may spend ε = 1.5 on its salaries table: one ε = 1 query
    # fits, a second does not.
    for i in range(3):
        with open(federation.client_config(i), "a") as f:
            f.write("\n[privacy_budget.salaries]\nepsilon = 1.5\ndelta = 1e-5\n")
    admin = sealroom.Admin(federation.admin_config)
    clients = [sealroom.Client(federation.client_config(i)).start() for i in range(3)]
    try:
        query = dict(
            domains={"dept": ["eng", "sales", "ops", "hr", "legal"]},
            bounds={"salary": (0, 200_000)},
            dp=(1.0, 1e-6),
            timeout=60,
        )
        df = admin.query("SELECT dept, COUNT(*) AS n FROM salaries GROUP BY dept", **query)
        with pytest.raises(sealroom.RoundAborted) as refused:
            admin.query("SELECT dept, COUNT(*) AS n FROM salaries GROUP BY dept", **query)
    finally:
        for c in clients:
            c.stop()
    assert df.attrs["privacy"]["epsilon"] == 1.0 and df.attrs["privacy"]["delta"] == 1e-6
    assert "privacy budget exhausted" in str(refused.value)
    expected = pooled_salaries(salaries).groupby("dept").size()
    # COUNT(*) noise: σ ≈ 9 rows (ε = 1 over a cell's 2 values); 100 rows
    # is over 10σ. A cell is released on its noised count, so a small one
    # may be suppressed; eng (121 rows) always passes.
    released = df[df["dept"].isin(expected.index) & df["n"].notna()]
    assert "eng" in set(released["dept"])
    diffs = [abs(row["n"] - expected[row["dept"]]) for _, row in released.iterrows()]
    assert all(d <= 100 for d in diffs), diffs
    # Noised: every released count exact has probability below 1e-4.
    assert any(d > 0 for d in diffs), diffs


def test_errors_are_typed_with_reason_codes(federation, tmp_path):
    with pytest.raises(sealroom.ConfigError) as e:
        sealroom.Admin(federation.client_config(0))
    assert e.value.reason == "config" and "admin" in str(e.value)
    with pytest.raises(sealroom.ConfigError) as e:
        sealroom.Admin(tmp_path / "missing.toml")
    assert "missing.toml" in str(e.value)
    admin = sealroom.Admin(federation.admin_config)
    with pytest.raises(sealroom.ConfigError) as e:
        admin.train({"table": "t", "label": "y", "features": ["a"], "model": "logistic"})
    assert e.value.reason == "spec" and "classes" in str(e.value)
    with pytest.raises(sealroom.ConfigError) as e:
        admin.query("SELECT MAX(salary) FROM salaries")
    assert e.value.reason == "query"
    # No client runs: the round aborts after its upload window with the
    # federation's abort reason.
    with pytest.raises(sealroom.RoundAborted) as e:
        admin.fedavg_round("r", 9, 4, BITS, CLIP, MAX_WEIGHT, admin.clients, timeout=60)
    assert e.value.reason == "not_enough_clients" and e.value.round_id > 0
    # A timeout cancels the wait (the round itself aborts on its own later).
    with pytest.raises(sealroom.Timeout) as e:
        admin.fedavg_round("r", 10, 4, BITS, CLIP, MAX_WEIGHT, admin.clients, timeout=0.3)
    assert e.value.reason == "timeout"
    assert isinstance(e.value, sealroom.SealroomError)


def test_audit_log_verifies(federation):
    admin = sealroom.Admin(federation.admin_config)
    summary = admin.verify_audit(federation.coordinator_config)
    assert summary["verified"] is True and summary["entries"] > 0
    with pytest.raises(sealroom.DataError) as e:
        admin.verify_audit(federation.client_config(0))
    assert e.value.reason == "audit_empty"

