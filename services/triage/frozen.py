"""Copies of frozen, slotted dataclasses with some fields changed, for the folds on every event.

`dataclasses.replace` walks the fields and calls the frozen `__init__`, which sets each field
through `object.__setattr__`: on a state of a dozen fields that is most of what folding an event
costs. `copier(cls)` builds, once per class, a function that sets the slots directly; the result is
the same value `replace` gives, and the instance stays frozen (assigning to it still raises).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, TypeVar

T = TypeVar("T")


def copier(cls: type[T]) -> Callable[..., T]:
    """`copy(obj, **changes)`: `obj` with `changes`, like `dataclasses.replace(obj, **changes)`
    (keyword arguments only; an unknown field name raises TypeError)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls, "MISSING": MISSING}
    for name in names:
        namespace[f"set_{name}"] = getattr(cls, name).__set__  # the slot's own descriptor
    params = ", ".join(f"{name}=MISSING" for name in names)
    body = "\n".join(f"    set_{n}(out, obj.{n} if {n} is MISSING else {n})" for n in names)
    source = f"def copy(obj, *, {params}):\n    out = new(cls)\n{body}\n    return out\n"
    exec(source, namespace)  # the source is built from the dataclass's own field names
    copy: Callable[..., T] = namespace["copy"]
    copy.__qualname__ = f"copier.<{cls.__name__}>"
    return copy
