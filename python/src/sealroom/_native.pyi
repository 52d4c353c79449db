"""Type stubs of the native module (crates/sealroom-py)."""

from collections.abc import Callable
from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str

class SealroomError(Exception):
    reason: str
    round_id: int | None

class ConfigError(SealroomError): ...
class RequestRefused(SealroomError): ...
class RoundAborted(SealroomError): ...
class DataError(SealroomError): ...
class Cancelled(SealroomError): ...
class Timeout(SealroomError): ...

class Admin:
    def __init__(self, config: str | PathLike[str]) -> None: ...
    @property
    def clients(self) -> list[str]: ...
    @property
    def min_clients(self) -> int: ...
    def start_round(
        self, task: str = ..., dim: int = ..., clients: list[str] | None = ..., timeout: float | None = ...
    ) -> str: ...
    def train(
        self,
        spec: str,
        clients: list[str] | None = ...,
        test: str | None = ...,
        export: str | None = ...,
        timeout: float | None = ...,
    ) -> str: ...
    def query(self, spec: str, clients: list[str] | None = ..., timeout: float | None = ...) -> str: ...
    def fedavg_round(
        self,
        run: str,
        round: int,
        n_params: int,
        bits: int,
        clip: float,
        max_weight: int,
        clients: list[str],
        timeout: float | None = ...,
        defences: str | None = ...,
    ) -> tuple[npt.NDArray[np.float64], list[str], int, int, dict[str, list[str]]]: ...
    def verify_audit(self, node_config: str | PathLike[str], timeout: float | None = ...) -> str: ...

class Client:
    def __init__(
        self, config: str | PathLike[str], input: Callable[[dict[str, Any]], npt.NDArray[np.float64]] | None = ...
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def running(self) -> bool: ...
    def start(self, timeout: float | None = ...) -> None: ...
    def next_event(self, timeout: float = ...) -> str | None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def contribute(
        self,
        update: npt.NDArray[np.float64],
        run: str,
        round: int,
        bits: int,
        clip: float,
        max_weight: int,
        timeout: float = ...,
        defences: str | None = ...,
    ) -> int: ...

class LocalFederation:
    def __init__(
        self,
        dir: str | PathLike[str],
        clients: int = ...,
        helpers: int = ...,
        min_clients: int | None = ...,
        upload_window_ms: int = ...,
        aggregation_window_ms: int = ...,
        timeout: float = ...,
    ) -> None: ...
    @property
    def dir(self) -> str: ...
    @property
    def admin_config(self) -> str: ...
    @property
    def coordinator_config(self) -> str: ...
    def client_config(self, index: int) -> str: ...
    def close(self, timeout: float = ...) -> None: ...

def encode_update(
    global_params: npt.NDArray[np.float64],
    local_params: npt.NDArray[np.float64],
    num_examples: int,
    bits: int,
    clip: float,
    max_weight: int,
    weighted: bool = ...,
) -> tuple[npt.NDArray[np.float64], int]: ...
def apply_sum(
    global_params: npt.NDArray[np.float64],
    sum: npt.NDArray[np.float64],
    bits: int,
    clip: float,
    max_weight: int,
) -> npt.NDArray[np.float64]: ...
def fedavg_spec(n_clients: int, clip: float, max_weight: int) -> tuple[int, float]: ...
def delta_step(bits: int, clip: float) -> float: ...
def client_name(config: str | PathLike[str]) -> str: ...
def resident_contribute(
    config: str | PathLike[str],
    update: npt.NDArray[np.float64] | None,
    run: str,
    round: int,
    bits: int,
    clip: float,
    max_weight: int,
    wait: bool = ...,
    timeout: float = ...,
    defences: str | None = ...,
) -> int: ...
def resident_start(config: str | PathLike[str], timeout: float = ...) -> None: ...
def resident_hosts() -> list[str]: ...
def resident_stop(config: str | PathLike[str] | None = ..., timeout: float = ...) -> None: ...
