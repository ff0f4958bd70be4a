"""oip: tensors to records, and the errors that name what is wrong (no server needed)."""

from __future__ import annotations

import pytest

from flywheel.serving import models, oip

CARD = models.parse_card(
    {
        "version": "v1",
        "classes": ["no", "yes"],
        "features": [
            {"name": "age", "type": "numeric"},
            {"name": "income", "type": "numeric"},
            {"name": "plan", "type": "categorical", "categories": ["free", "pro"]},
        ],
    }
)


def tensor(name: str, shape: list[int], datatype: str, data: list) -> dict:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_a_numeric_matrix_and_categorical_columns_become_records() -> None:
    inputs = [
        tensor("input", [2, 2], "FP32", [30.0, 1.5, 40.0, 2.5]),
        tensor("plan", [2], "BYTES", ["pro", "free"]),
    ]
    assert oip._records(inputs, CARD, 10) == [
        {"age": 30.0, "income": 1.5, "plan": "pro"},
        {"age": 40.0, "income": 2.5, "plan": "free"},
    ]
    nested = [
        tensor("input", [2, 2], "FP32", [[30.0, 1.5], [40.0, 2.5]]),
        tensor("plan", [2, 1], "BYTES", ["pro", "free"]),
    ]
    assert oip._records(nested, CARD, 10) == oip._records(inputs, CARD, 10)
    per_feature = [
        tensor("age", [2], "FP64", [30.0, 40.0]),
        tensor("income", [2], "FP32", [1.5, 2.5]),
        tensor("plan", [2], "BYTES", ["pro", "free"]),
    ]
    assert oip._records(per_feature, CARD, 10) == oip._records(inputs, CARD, 10)


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ([tensor("input", [1, 2], "FP32", [1.0, 2.0])], "missing ['plan']"),
        ([tensor("input", [1, 3], "FP32", [1.0, 2.0, 3.0]), tensor("plan", [1], "BYTES", ["pro"])], "[N, 2]"),
        (
            [tensor("input", [2, 2], "FP32", [1.0, 2.0]), tensor("plan", [2], "BYTES", ["pro", "pro"])],
            "2 values",
        ),
        ([tensor("input", [1, 2], "INT64", [1, 2]), tensor("plan", [1], "BYTES", ["pro"])], "expected FP32"),
        ([tensor("input", [1, 2], "FP32", [1.0, 2.0]), tensor("plan", [2], "BYTES", ["a", "b"])], "rows"),
        ([tensor("input", [1, 2], "FP32", [1.0, 2.0]), tensor("plan", [1], "FP32", [1.0])], "expected BYTES"),
        ([tensor("wat", [1], "FP32", [1.0])], "unknown tensors ['wat']"),
        ([{"name": "input", "shape": [1, 2]}], "missing keys ['data', 'datatype']"),
        (
            [tensor("input", [11, 2], "FP32", [1.0] * 22), tensor("plan", [11], "BYTES", ["pro"] * 11)],
            "1 to 10 rows",
        ),
    ],
)
def test_malformed_tensors_are_400s_naming_the_problem(inputs: list, words: str) -> None:
    with pytest.raises(oip.Problem) as caught:
        oip._records(inputs, CARD, 10)
    assert caught.value.status == 400 and words in caught.value.message, caught.value.message


def test_request_keys_and_outputs_are_checked() -> None:
    with pytest.raises(oip.Problem, match="unknown request keys"):
        oip._json(b'{"inputs": [{}], "extra": 1}')
    with pytest.raises(oip.Problem, match="invalid JSON"):
        oip._json(b"{")
    with pytest.raises(oip.Problem, match="no output named"):
        oip._outputs([{"name": "logits"}], "classification")
    assert oip._outputs(None, "regression") == {"predictions"}
