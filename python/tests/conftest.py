"""Shared fixtures: a federation on loopback per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

import sealroom

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def add_table(config: Path, table: str, entry: str) -> None:
    """Appends a `[data.<table>]` entry to a client config."""
    with open(config, "a") as f:
        f.write(f"\n[data.{table}]\n{entry}\n")


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    fed = sealroom.LocalFederation(
        str(tmp_path_factory.mktemp("fed")), clients=3, helpers=3, min_clients=2, upload_window_ms=4000
    )
    yield fed
    fed.close()
