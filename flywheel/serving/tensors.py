"""Named tensor inputs of the Open Inference Protocol, for a model whose card declares them
(`inputs.kind: tensors`, see models.Tensor): each declared tensor sent by name, shape [N, *shape]
or [N, prod(shape)], FP32 (FP64 accepted, as for features), JSON data flat or nested as the shape.
Rows become records keyed by the tensors' columns, the same records /predict validates.

Bounded before anything is built: the guard has capped the body (maxBodyBytes), N is checked
against maxRequestRows and the per-row shape against the card before the data is read, so the
values read never exceed what the body held. Every refusal names the tensor and what it expected.
"""

from __future__ import annotations

from typing import Any

from flywheel.serving import models, numbers

FLOATS = ("FP32", "FP64")


class Refused(ValueError):
    """A tensor the model cannot take; the message names it (oip answers 400)."""


def expected(tensor: models.Tensor) -> str:
    dims = ", ".join(str(d) for d in tensor.shape)
    flat = f" or [N, {tensor.size}]" if len(tensor.shape) > 1 else ""
    return f"{tensor.name!r} FP32 [N, {dims}]{flat}"


def records(sent: dict[str, dict[str, Any]], card: models.Card, max_rows: int) -> list[dict[str, Any]]:
    """One record per row from the tensors `sent` (by name, each already an object with name,
    shape, datatype and data)."""
    declared = {t.name: t for t in card.tensors}
    unknown = sorted(set(sent) - set(declared))
    missing = [name for name in declared if name not in sent]
    if unknown or missing:
        raise Refused(
            f"inputs: unknown tensors {[u[:60] for u in unknown[:10]]}, missing {missing}: this model "
            f"takes {'; '.join(expected(t) for t in card.tensors)}"
        )
    n: int | None = None
    filled: list[tuple[models.Tensor, list[float]]] = []
    for t in card.tensors:
        tensor = sent[t.name]
        if tensor["datatype"] not in FLOATS:
            raise Refused(
                f"input {t.name}: datatype {str(tensor['datatype'])[:20]!r}; expected {expected(t)}"
            )
        shape = _shape(t, tensor["shape"])
        rows = shape[0]
        if not 1 <= rows <= max_rows:  # before the data is read: N is the only free dimension
            raise Refused(f"input {t.name}: 1 to {max_rows} rows per request, got {rows}")
        if n is not None and rows != n:
            raise Refused(f"input {t.name}: {rows} rows where the other inputs have {n}")
        n = rows
        filled.append((t, _values(t, tensor["data"], shape)))
    assert n is not None  # a card declares at least one tensor
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for t, values in filled:
        size = t.size
        for r in range(n):
            out[r].update(zip(t.columns, values[r * size : (r + 1) * size], strict=True))
    return out


def _shape(t: models.Tensor, shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise Refused(
            f"input {t.name}: shape must be a list of non-negative integers; expected {expected(t)}"
        )
    if len(shape) < 2 or (shape[1:] != list(t.shape) and shape[1:] != [t.size]):
        got = [*shape[:6], "..."] if len(shape) > 6 else shape
        raise Refused(f"input {t.name}: shape {str(got)[:80]}; expected {expected(t)}")
    return shape


def _values(t: models.Tensor, data: Any, shape: list[int]) -> list[float]:
    """The tensor's values row-major: `data` flat (N x size values) or nested exactly as `shape`
    (ragged lists refused), each a finite number float32 can hold."""
    count = shape[0] * t.size
    if not isinstance(data, list):
        raise Refused(f"input {t.name}: data must be a list")
    if data and isinstance(data[0], list):
        level: list[Any] = [data]
        for depth, dim in enumerate(shape):
            nxt: list[Any] = []
            for i, item in enumerate(level):
                if not isinstance(item, list) or len(item) != dim:
                    got = f"{len(item)} items" if isinstance(item, list) else "a number"
                    raise Refused(
                        f"input {t.name}: nested data does not match shape {shape}: {got} at depth "
                        f"{depth} (list {i}) where {dim} belong; send it flat or nested exactly as the shape"
                    )
                nxt.extend(item)
            level = nxt
        values = level
    else:
        values = data
    if len(values) != count:
        raise Refused(f"input {t.name}: {len(values)} values where shape {shape} says {count}")
    for i, v in enumerate(values):
        # type(): bool is an int subclass, and a string that looks like a number is still a string.
        # abs(v) <= max is False for NaN and inf, and compares a huge int exactly (no overflow).
        if (type(v) is not float and type(v) is not int) or not abs(v) <= numbers.FLOAT32_MAX:
            what = "not a finite number float32 can hold" if type(v) in (int, float) else "not a number"
            column = t.columns[i % t.size]
            raise Refused(f"input {t.name} row {i // t.size} ({column}): {str(v)[:40]!r} is {what}")
    return [float(v) for v in values]
