"""Resident clients (the Flower mod's path): one long-lived client node per
sealroom identity on the host, fed one update per framework round, from
this process or — over its Unix socket — from another one. Checked against
numpy's weighted FedAvg of the same updates, across processes, rounds, a
sit-out, a repeated update and the hosting process ending."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import sealroom
from sealroom import _native

N_PARAMS = 301
BITS, CLIP, MAX_WEIGHT = 16, 1.0, 1000

# A second process that hosts one identity's resident node until its stdin closes.
HOST = textwrap.dedent(
    """
    import sys
    from sealroom import _native
    _native.resident_start(sys.argv[1])
    print(",".join(_native.resident_hosts()), flush=True)
    sys.stdin.read()
    """
)


def local_update(i: int, server_round: int, global_params: np.ndarray) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(1000 * server_round + i)
    return global_params + rng.normal(0, 0.05, global_params.size), 20 + 7 * i


def fedavg(ids, server_round, global_params):
    """numpy's weighted FedAvg of the local models of clients `ids`."""
    models = [local_update(i, server_round, global_params) for i in ids]
    weights = np.array([min(n, MAX_WEIGHT) for _, n in models], dtype=np.float64)
    return sum(w * m for w, (m, _) in zip(weights, models)) / weights.sum()


@pytest.fixture()
def fed(tmp_path):
    # A round with a client sitting out lasts its upload window (the helpers
    # report early only once every client has uploaded): keep it short.
    fed = sealroom.LocalFederation(str(tmp_path / "fed"), clients=3, min_clients=2, upload_window_ms=5_000)
    yield fed
    # This process's resident nodes end with their federation.
    sealroom.resident_stop()
    assert sealroom.resident_hosts() == []
    fed.close()


def test_resident_clients_across_processes_match_numpy(fed):
    admin = sealroom.Admin(fed.admin_config)
    configs = [fed.client_config(i) for i in range(3)]
    global_params = np.linspace(-0.5, 0.5, N_PARAMS)
    step = sealroom.delta_step(BITS, CLIP)
    host = subprocess.Popen([sys.executable, "-c", HOST, configs[0]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        # client-0's node runs in the other process; this one hosts 1 and 2.
        assert host.stdout.readline().strip() == "client-0"
        with ThreadPoolExecutor(max_workers=4) as pool:
            for server_round, ids in [(1, [0, 1]), (2, [0, 1, 2])]:
                pending = pool.submit(admin.fedavg_round, "resident-run", server_round, N_PARAMS, BITS,
                                      CLIP, MAX_WEIGHT, admin.clients, 60)
                uploads = {}
                for i in range(3):
                    if i not in ids:
                        continue
                    local, n = local_update(i, server_round, global_params)
                    update, _ = sealroom.encode_update(global_params, local, n, BITS, CLIP, MAX_WEIGHT)
                    uploads[i] = pool.submit(_native.resident_contribute, configs[i], update, "resident-run",
                                             server_round, BITS, CLIP, MAX_WEIGHT, True, 60.0)
                if 2 not in ids:
                    # Client 2's training "failed": it sits the round out at once.
                    with pytest.raises(sealroom.DataError) as skipped:
                        _native.resident_contribute(configs[2], None, "resident-run", server_round,
                                                    BITS, CLIP, MAX_WEIGHT, True, 60.0)
                    assert skipped.value.reason == "skipped"
                total, included, _, total_weight = pending.result()
                # Every upload is one share per parameter plus the weight, and
                # seeds: the shares travel narrowed to the bits the sum needs
                # (docs/protocol.md "Narrow shares"; 27 here), at least the
                # 16-bit deltas' own width and at most the 32-bit ring's.
                narrowest, widest = (N_PARAMS + 1) * BITS // 8, 4 * (N_PARAMS + 1)
                assert all(narrowest <= u.result() <= widest * 1.5 for u in uploads.values())
                assert included == [f"client-{i}" for i in ids]
                assert total_weight == sum(20 + 7 * i for i in ids)
                secure = sealroom.apply_sum(global_params, total, BITS, CLIP, MAX_WEIGHT)
                assert np.max(np.abs(secure - fedavg(ids, server_round, global_params))) <= step / 2 + 1e-12
        assert sorted(_native.resident_hosts()) == ["client-1", "client-2"]

        # An update for a round already handed in is refused, not counted twice.
        local, n = local_update(1, 2, global_params)
        update, _ = sealroom.encode_update(global_params, local, n, BITS, CLIP, MAX_WEIGHT)
        with pytest.raises(sealroom.DataError) as again:
            _native.resident_contribute(configs[1], update, "resident-run", 2, BITS, CLIP, MAX_WEIGHT,
                                        False, 10.0)
        assert again.value.reason == "already_contributed"
    finally:
        host.stdin.close()
        host.wait(timeout=30)

    # The hosting process ended: this one takes client-0 over.
    with ThreadPoolExecutor(max_workers=4) as pool:
        pending = pool.submit(admin.fedavg_round, "resident-run", 3, N_PARAMS, BITS, CLIP, MAX_WEIGHT,
                              admin.clients, 60)
        for i in range(3):
            local, n = local_update(i, 3, global_params)
            update, _ = sealroom.encode_update(global_params, local, n, BITS, CLIP, MAX_WEIGHT)
            assert _native.resident_contribute(configs[i], update, "resident-run", 3, BITS, CLIP,
                                               MAX_WEIGHT, False, 60.0) == -1
        total, included, _, _ = pending.result()
    assert included == ["client-0", "client-1", "client-2"]
    assert sorted(_native.resident_hosts()) == ["client-0", "client-1", "client-2"]
    secure = sealroom.apply_sum(global_params, total, BITS, CLIP, MAX_WEIGHT)
    assert np.max(np.abs(secure - fedavg([0, 1, 2], 3, global_params))) <= step / 2 + 1e-12


def test_resident_errors_name_no_value(fed):
    global_params = np.zeros(N_PARAMS)
    with pytest.raises(sealroom.ConfigError):
        _native.resident_contribute(fed.client_config(0), np.zeros(1), "r", 1, BITS, CLIP, MAX_WEIGHT)
    with pytest.raises(sealroom.ConfigError):
        _native.resident_contribute(fed.admin_config, np.zeros(5), "r", 1, BITS, CLIP, MAX_WEIGHT)
    # No round is offered: the caller's timeout ends the wait.
    update, _ = sealroom.encode_update(global_params, global_params + 0.123, 7, BITS, CLIP, MAX_WEIGHT)
    with pytest.raises(sealroom.Timeout) as timeout:
        _native.resident_contribute(fed.client_config(0), update, "r", 1, BITS, CLIP, MAX_WEIGHT, True, 0.5)
    assert "0.123" not in str(timeout.value)


def test_resident_client_with_a_long_data_dir_path(tmp_path):
    """A data directory too deep for a Unix socket path: the socket goes to
    a directory of this user's only, and another process still reaches it."""
    deep = tmp_path / ("a-long-directory-name-" * 5)
    fed = sealroom.LocalFederation(str(deep / "fed"), clients=2, min_clients=2, upload_window_ms=10_000)
    try:
        configs = [fed.client_config(i) for i in range(2)]
        host = subprocess.Popen([sys.executable, "-c", HOST, configs[0]], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            assert host.stdout.readline().strip() == "client-0"
            admin = sealroom.Admin(fed.admin_config)
            global_params = np.linspace(-0.5, 0.5, N_PARAMS)
            with ThreadPoolExecutor(max_workers=3) as pool:
                pending = pool.submit(admin.fedavg_round, "deep-run", 1, N_PARAMS, BITS, CLIP, MAX_WEIGHT,
                                      admin.clients, 60)
                uploads = []
                for i in range(2):
                    local, n = local_update(i, 1, global_params)
                    update, _ = sealroom.encode_update(global_params, local, n, BITS, CLIP, MAX_WEIGHT)
                    uploads.append(pool.submit(sealroom.resident_contribute, configs[i], update, "deep-run", 1,
                                               BITS, CLIP, MAX_WEIGHT))
                assert all(u.result() > 0 for u in uploads)
                total, included, _, _ = pending.result()
            assert included == ["client-0", "client-1"]
            assert sealroom.resident_hosts() == ["client-1"]
            secure = sealroom.apply_sum(global_params, total, BITS, CLIP, MAX_WEIGHT)
            step = sealroom.delta_step(BITS, CLIP)
            assert np.max(np.abs(secure - fedavg([0, 1], 1, global_params))) <= step / 2 + 1e-12
        finally:
            host.stdin.close()
            host.wait(timeout=30)
    finally:
        sealroom.resident_stop()
        fed.close()
