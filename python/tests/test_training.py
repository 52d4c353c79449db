"""Training on the clients' own tables through the Python API, compared with
scikit-learn: the breast-cancer data shipped with scikit-learn, split
75/25 (stratified, random_state=0); the 75% training rows are cut into
three CSV files of 40%, 35% and 25% (one per client, not a built-in data
set); the 25% are the admin's test file. sealroom's model must reach the
test accuracy of scikit-learn's LogisticRegression on the pooled training
rows (standardized the same way) within 1 point, and the exported model,
read with numpy alone, must reproduce that accuracy and replay every FedAvg
round bit for bit from the revealed sums."""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest

import sealroom
from conftest import add_table


def read_safetensors(path):
    """The safetensors format with numpy alone: header length, JSON header,
    little-endian data."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F64"
        begin, end = t["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype="<f8").reshape(t["shape"])
    return out


def test_training_matches_scikit_learn_and_the_export_replays(tmp_path):
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    features = [c for c in frame.columns if c != "target"]
    frame["diagnosis"] = np.where(frame["target"] == 1, "benign", "malignant")
    train, test = train_test_split(frame, test_size=0.25, stratify=frame["target"], random_state=0)
    cuts = [0, int(0.40 * len(train)), int(0.75 * len(train)), len(train)]

    fed = sealroom.LocalFederation(str(tmp_path / "fed"), clients=3, min_clients=2, upload_window_ms=10_000)
    clients = []
    try:
        for i in range(3):
            part = tmp_path / f"site-{i}.csv"
            train.iloc[cuts[i] : cuts[i + 1]][features + ["diagnosis"]].to_csv(part, index=False)
            add_table(fed.client_config(i), "patients", f'kind = "csv"\npath = "{part}"')
            clients.append(sealroom.Client(fed.client_config(i)).start())
        test_csv = tmp_path / "test.csv"
        test[features + ["diagnosis"]].to_csv(test_csv, index=False)
        spec = {
            "table": "patients",
            "label": "diagnosis",
            "features": features,
            "classes": ["malignant", "benign"],
            "model": "logistic",
            "rounds": 40,
            "validation": {"fraction": 0.0},
            "train": {"learning_rate": 0.05, "epochs": 2, "batch_size": 16, "l2": 0.0, "seed": 1},
            "quantization": {"bits": 16, "clip": 1.0, "max_weight": 4096},
        }
        admin = sealroom.Admin(fed.admin_config)
        report = admin.train(spec, test=test_csv, export=tmp_path / "model", timeout=600)
    finally:
        for c in clients:
            c.stop()
        fed.close()

    # scikit-learn on the pooled training rows, the same standardization.
    scaler = StandardScaler().fit(train[features])
    sk = LogisticRegression(max_iter=5000).fit(scaler.transform(train[features]), train["target"])
    sk_accuracy = sk.score(scaler.transform(test[features]), test["target"])

    # The export with numpy alone.
    tensors = read_safetensors(tmp_path / "model" / "model.safetensors")
    desc = json.loads((tmp_path / "model" / "model.json").read_text())
    assert desc["format"] == "sealroom-model/1" and desc["features"] == features
    w = {e["name"]: tensors["params"][e["offset"] : e["offset"] + int(np.prod(e["shape"]))].reshape(e["shape"]) for e in desc["layout"]}
    x = (test[features].to_numpy(dtype=np.float64) - tensors["mean"]) / tensors["std"]
    predicted = np.array(desc["classes"])[np.argmax(x @ w["W"] + w["b"], axis=1)]
    accuracy = float(np.mean(predicted == test["diagnosis"].to_numpy()))
    best = desc["best_round"]
    assert accuracy == pytest.approx(desc["test"][best]["accuracy"], abs=1e-12)
    assert accuracy == pytest.approx(report["rounds"][best - 1]["test"]["accuracy"], abs=1e-12)
    assert accuracy >= sk_accuracy - 0.01, (accuracy, sk_accuracy)
    print(f"sealroom {accuracy:.4f}  scikit-learn {sk_accuracy:.4f}")

    # The standardization is the pooled one.
    np.testing.assert_allclose(tensors["mean"], train[features].mean().to_numpy(), rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(tensors["std"], train[features].std(ddof=0).to_numpy(), rtol=1e-6, atol=1e-6)

    # An independent FedAvg replay from the revealed sums, bit for bit.
    history, sums = tensors["history.params"], tensors["history.sums"]
    p, step = desc["n_params"], desc["quantization"]["wire_step"]
    for r in range(desc["rounds"]):
        replayed = history[r] + sums[r, :p] / (sums[r, p] / step)
        assert np.array_equal(replayed.view(np.uint64), history[r + 1].view(np.uint64)), r
    assert np.array_equal(tensors["params"], history[best])
