"""Python's cyclic garbage collector, tuned once for a long-running server process.

Its full passes (the oldest generation) stop the whole process while they walk every object it holds,
and two kinds of them cost a busy service its latency (measured in the embedded process at 47
alerts/s, with `gc.callbacks`):
- what start-up built (modules, models and their schemas, routes: over 100,000 objects), walked again
  by every pass: 60-118 ms each. It is set aside once started (`gc.freeze`, after a collection);
  objects set aside are still freed when nothing refers to them.
- what the service keeps as it runs (cached aggregates, envelopes committed lately, views) grows with
  it: a pass took 10 ms at first and 184 ms after 5,700 incidents, and the collector starts one
  whenever a quarter more objects have outlived the young generations since the last, every 8-12 s
  under load. Full passes now run on a schedule instead, every `FULL_PASS_EVERY` seconds, from a
  thread of their own; the young generations are collected as before, and cyclic garbage that outlives
  them waits for the next full pass.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

FULL_PASS_EVERY = 60.0
_NEVER = 1_000_000_000  # young-generation passes before the collector would start a full one itself


def tune(every: float = FULL_PASS_EVERY) -> Callable[[], None]:
    """Collect, set what is alive now aside, and run full passes every `every` seconds only.
    Returns what undoes it (for tests, which build many apps in one process)."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, _NEVER)
    stop = threading.Event()

    def passes() -> None:
        while not stop.wait(every):
            gc.collect()

    thread = threading.Thread(target=passes, name="lynchpin-gc", daemon=True)
    thread.start()

    def undo() -> None:
        stop.set()
        thread.join()
        gc.set_threshold(young, middle, old)
        gc.unfreeze()

    return undo
