"""What start-up built is set aside from the collector's passes, and still freed by reference count."""

from __future__ import annotations

import gc
import weakref

from shared.web import freeze_start_up


class Built:
    pass


def test_start_up_objects_are_out_of_the_collectors_passes_and_still_freed() -> None:
    built = [Built() for _ in range(1000)]
    gone = weakref.ref(built[0])
    try:
        freeze_start_up()
        assert gc.get_freeze_count() >= 1000
        walked = {id(o) for o in gc.get_objects()}  # what a full pass walks
        assert not any(id(b) in walked for b in built)
        del built
        assert gone() is None  # nothing referring to it: freed, frozen or not
    finally:
        gc.unfreeze()
