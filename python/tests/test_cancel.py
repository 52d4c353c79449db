"""Long waits release the GIL and stop on Ctrl-C (its own federation, so no
earlier round is still pending at the coordinator)."""

from __future__ import annotations

import pytest

import sealroom

BITS, CLIP, MAX_WEIGHT = 16, 1.0, 1000


def test_long_waits_release_the_gil_and_ctrl_c_cancels(federation):
    import os
    import signal
    import threading
    import time

    admin = sealroom.Admin(federation.admin_config)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.01)

    def interrupt():
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ticker, daemon=True).start()
    threading.Thread(target=interrupt, daemon=True).start()
    started = time.monotonic()
    try:
        # No client runs: without the interrupt this waits for the upload window.
        with pytest.raises(KeyboardInterrupt):
            admin.fedavg_round("r", 11, 4, BITS, CLIP, MAX_WEIGHT, admin.clients, timeout=60)
    finally:
        stop.set()
    # Python threads ran while the call waited (the GIL was released) ...
    assert len(ticks) >= 10
    # ... and the interrupt ended the wait long before the round would have.
    assert time.monotonic() - started < 3.5
