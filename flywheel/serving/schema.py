"""Request types built from the model card, so a bad request fails before the model sees it.

One strict typed record per row: numeric features are finite floats within float32's range (no
NaN, no inf, no strings, no booleans), categorical features one of the card's categories, nullable
ones may be null or left out, and unknown fields are rejected. BentoML turns a pydantic
ValidationError into a 400 whose `detail` names the field (`loc`, e.g. ["records", 3, "age"]) and
the problem (`msg`).

A record is a TypedDict, not a BaseModel: pydantic validates it to a plain dict (what the service
scores and logs) with the same checks and the same error locations and messages, without building
a model instance per record and dumping it back (~30% of the validation cost at 16 records a request).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
import typing_extensions
from pydantic import Field

from flywheel.serving import models, numbers

_STRICT = pydantic.ConfigDict(extra="forbid", strict=True)


def _field_type(feature: models.Feature) -> Any:
    if feature.type == "categorical" and feature.categories:
        kind: Any = Literal[feature.categories]
    elif feature.type == "categorical":
        kind = Annotated[str, Field(min_length=1, max_length=256)]
    else:
        # Out-of-range numbers are served (and logged, so drift shows); non-finite ones, and ones
        # float32 (what models compute in) cannot hold, are not: they would come back as NaN.
        kind = Annotated[float, Field(allow_inf_nan=False, ge=-numbers.FLOAT32_MAX, le=numbers.FLOAT32_MAX)]
    return kind | None if feature.nullable else kind


def record_model(card: models.Card) -> Any:
    """A strict TypedDict of one input row of this card's model; a nullable feature may be left out
    (readers take a missing key as null)."""
    fields: dict[str, Any] = {}
    for feature in card.features:
        kind = _field_type(feature)
        fields[feature.name] = typing_extensions.NotRequired[kind] if feature.nullable else kind
    # typing_extensions' TypedDict (pydantic refuses typing's on Python < 3.12), called through Any:
    # type checkers accept only literal field dicts.
    typed_dict: Any = typing_extensions.TypedDict
    record = typed_dict("Record", fields)
    record.__pydantic_config__ = _STRICT
    return record


def records_type(card: models.Card, max_rows: int) -> Any:
    """The `records` parameter type: 1..max_rows rows."""
    return Annotated[list[record_model(card)], Field(min_length=1, max_length=max_rows)]  # type: ignore[misc]


GenericRecords = Annotated[list[dict[str, Any]], Field(min_length=1)]
"""Used only when the module is imported without a config (e.g. `bentoml build`)."""
