"""The collector tuned for serving: what start-up built is set aside from its passes (and still freed
by reference count); full passes come on a schedule, not whenever enough objects outlived the young
generations."""

from __future__ import annotations

import gc
import time
import weakref

from shared import collector


class Built:
    pass


class Cyclic:
    def __init__(self) -> None:
        self.me = self


def test_start_up_objects_are_out_of_the_collectors_passes_and_still_freed() -> None:
    built = [Built() for _ in range(1000)]
    gone = weakref.ref(built[0])
    undo = collector.tune(every=3600)
    try:
        assert gc.get_freeze_count() >= 1000
        walked = {id(o) for o in gc.get_objects()}  # what a full pass walks
        assert not any(id(b) in walked for b in built)
        del built
        assert gone() is None  # nothing referring to it: freed, frozen or not
    finally:
        undo()


def old_cyclic_garbage() -> weakref.ref[Cyclic]:
    """A reference cycle that outlived the young generations, then became garbage: only a full pass
    frees it."""
    held = [Cyclic()]
    gc.collect(1)  # alive through the young generations' passes: it is in the oldest now
    ref = weakref.ref(held[0])
    del held
    return ref


def test_full_passes_come_on_the_schedule_not_from_allocations() -> None:
    undo = collector.tune(every=3600)
    try:
        garbage = old_cyclic_garbage()
        kept = [Cyclic() for _ in range(300_000)]  # hundreds of young passes' worth, outliving them
        assert garbage() is not None, "the collector started a full pass by itself"
        del kept
    finally:
        undo()
    undo = collector.tune(every=0.05)
    try:
        garbage = old_cyclic_garbage()
        deadline = time.monotonic() + 10
        while garbage() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert garbage() is None, "no full pass came on the schedule"
    finally:
        undo()
