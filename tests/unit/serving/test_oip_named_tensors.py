"""Named tensor inputs (a card with `inputs.kind: tensors`): tensors to records, the card checks,
and the attacks (wrong shapes, NaN/Inf, huge N, strings, ragged lists, a tensor sent twice), each
a 400 naming the tensor and what it expected. No server needed; the HTTP path is in
tests/integration/serving/test_open_inference_tensors.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flywheel import errors
from flywheel.serving import models, oip

PIXELS = [f"px{i}" for i in range(8)]


def card_raw(**inputs: Any) -> dict[str, Any]:
    image = {"name": "image", "datatype": "FP32", "shape": [2, 2, 2], "columns": PIXELS}
    return {
        "version": "v1",
        "classes": ["a", "b"],
        "features": [{"name": c, "type": "numeric"} for c in PIXELS],
        "inputs": inputs or {"kind": "tensors", "tensors": [image]},
    }


CARD = models.parse_card(card_raw())


def image(shape: list[int], data: Any, datatype: str = "FP32", name: str = "image") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_the_card_declares_its_tensors_and_older_cards_declare_none() -> None:
    assert CARD.tensors == (models.Tensor("image", "FP32", (2, 2, 2), tuple(PIXELS)),)
    assert CARD.tensors[0].size == 8
    assert models.parse_card(card_raw(kind="matrix")).tensors == ()
    legacy = card_raw()
    del legacy["inputs"]
    assert models.parse_card(legacy).tensors == ()
    # columnPrefix: <prefix>0 .. <prefix>N-1, as spec.trainer.inputs expands it.
    by_prefix = card_raw(kind="tensors", tensors=[{"name": "image", "shape": [8], "columnPrefix": "px"}])
    assert models.parse_card(by_prefix).tensors[0].columns == tuple(PIXELS)
    # The tensors are part of the request schema a hot swap must keep.
    other = card_raw(kind="tensors", tensors=[{"name": "image", "shape": [8], "columns": PIXELS}])
    assert models.parse_card(other).schema_key() != CARD.schema_key()


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ({"kind": "pictures"}, "inputs.kind: 'pictures'"),
        ({"kind": "tensors"}, "inputs.tensors: a non-empty list"),
        ({"kind": "tensors", "tensors": [{"name": "image", "shape": [3, 3], "columns": PIXELS}]}, "8 columns where shape [3, 3] needs 9"),
        ({"kind": "tensors", "tensors": [{"name": "image", "shape": [8], "datatype": "INT8", "columns": PIXELS}]}, "datatype 'INT8'"),
        ({"kind": "tensors", "tensors": [{"name": "image", "shape": [0, 8], "columns": PIXELS}]}, "positive integers"),
        ({"kind": "tensors", "tensors": [{"name": "image", "shape": [4], "columns": PIXELS[:4]}]}, "numeric features once each"),
    ],
)  # fmt: skip
def test_a_card_whose_tensors_do_not_fit_its_features_is_refused(inputs: dict[str, Any], words: str) -> None:
    with pytest.raises(errors.UserError, match=r"model_card\.json inputs") as caught:
        models.parse_card(card_raw(**inputs))
    assert words in str(caught.value)


def test_tensors_become_the_records_predict_takes() -> None:
    flat = list(range(16))  # two rows of 8 pixels, ints accepted as numbers
    want = [
        {f"px{i}": float(i) for i in range(8)},
        {f"px{i}": float(8 + i) for i in range(8)},
    ]
    assert oip._records([image([2, 2, 2, 2], flat)], CARD, 10) == want
    assert oip._records([image([2, 8], flat, "FP64")], CARD, 10) == want
    nested = [[[[0, 1], [2, 3]], [[4, 5], [6, 7]]], [[[8, 9], [10, 11]], [[12, 13], [14, 15]]]]
    assert oip._records([image([2, 2, 2, 2], nested)], CARD, 10) == want
    assert oip._records([image([2, 8], [flat[:8], flat[8:]])], CARD, 10) == want
    assert all(type(v) is float for r in oip._records([image([2, 8], flat)], CARD, 10) for v in r.values())


EIGHT = [0.0] * 8


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        # wrong shapes: each names the tensor and the shape it takes
        ([image([1, 4, 2], EIGHT)], "input image: shape [1, 4, 2]; expected 'image' FP32 [N, 2, 2, 2] or [N, 8]"),
        ([image([8], EIGHT)], "input image: shape [8]; expected"),
        ([image([1, 2, 2, 2], EIGHT[:7])], "input image: 7 values where shape [1, 2, 2, 2] says 8"),
        ([image([1, 2, 2, -2], EIGHT)], "non-negative integers"),
        ([image([1, 2.0, 2, 2], EIGHT)], "non-negative integers"),
        ([image([0, 8], [])], "1 to 10 rows per request, got 0"),
        # huge N is refused by the shape alone, before any data is read or built
        ([image([10**12, 8], EIGHT)], "1 to 10 rows per request, got 1000000000000"),
        # datatype
        ([image([1, 8], EIGHT, "INT64")], "input image: datatype 'INT64'; expected 'image' FP32"),
        ([image([1, 8], ["a"] * 8, "BYTES")], "datatype 'BYTES'"),
        # values: strings, booleans, NaN, Inf, beyond float32, null
        ([image([1, 8], [*EIGHT[:3], "0.5", *EIGHT[4:]])], "input image row 0 (px3): '0.5' is not a number"),
        ([image([1, 8], [True, *EIGHT[1:]])], "row 0 (px0): 'True' is not a number"),
        ([image([2, 8], [*EIGHT, *EIGHT[:5], float("nan"), 0.0, 0.0])], "row 1 (px5): 'nan' is not a finite number"),
        ([image([1, 8], [*EIGHT[:7], float("inf")])], "row 0 (px7): 'inf' is not a finite number"),
        ([image([1, 8], [1e39, *EIGHT[1:]])], "(px0): '1e+39' is not a finite number float32 can hold"),
        ([image([1, 8], [10**400, *EIGHT[1:]])], "float32 can hold"),
        ([image([1, 8], [None, *EIGHT[1:]])], "'None' is not a number"),
        # nested ragged lists, and nesting deeper than the shape
        ([image([2, 8], [EIGHT, EIGHT[:7]])], "nested data does not match shape [2, 8]: 7 items at depth 1"),
        ([image([1, 2, 2, 2], [[[[0, 0], [0]], [[0, 0], [0, 0]]]])], "1 items at depth 3"),
        ([image([2, 8], [EIGHT, 5])], "a number at depth 1"),
        ([image([1, 8], [[[0.0]] * 8])], "is not a number"),
        ([image([1, 8], [0.0, *[[0.0]] * 7])], "(px1): '[0.0]' is not a number"),
        ([image([1, 8], "0,0,0")], "data must be a list"),
        # names: a tensor sent twice, unknown, missing
        ([image([1, 8], EIGHT), image([1, 8], EIGHT)], "tensor 'image' sent twice"),
        ([image([1, 8], EIGHT), image([1, 8], EIGHT, name="mask")], "unknown tensors ['mask']"),
        ([image([1, 8], EIGHT, name="input")], "unknown tensors ['input'], missing ['image']: this model takes 'image' FP32 [N, 2, 2, 2]"),
        ([image([1], EIGHT[:1], name="px0")], "unknown tensors ['px0']"),
    ],
)  # fmt: skip
def test_bad_tensors_are_400s_naming_the_tensor(inputs: list[dict[str, Any]], words: str) -> None:
    with pytest.raises(oip.Problem) as caught:
        oip._records(inputs, CARD, 10)
    assert caught.value.status == 400
    assert words in caught.value.message, caught.value.message


def test_deeply_nested_json_is_a_400_not_a_crash() -> None:
    body = json.dumps({"inputs": []})[:-3] + "[" * 100_000 + "]" * 100_000 + "]}"
    with pytest.raises(oip.Problem, match="nested too deeply"):
        oip._json(body.encode())
