"""Request types built from the model card, so a bad request fails before the model sees it.

One pydantic model per record: numeric features are finite floats (no NaN, no inf, no strings,
no booleans), categorical features one of the card's categories, nullable ones may be null, and
unknown fields are rejected. BentoML turns a pydantic ValidationError into a 400 whose `detail`
names the field (`loc`, e.g. ["records", 3, "age"]) and the problem (`msg`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from flywheel.serving import models

_STRICT = pydantic.ConfigDict(extra="forbid", strict=True)


def _field_type(feature: models.Feature) -> Any:
    if feature.type == "categorical" and feature.categories:
        kind: Any = Literal[feature.categories]
    elif feature.type == "categorical":
        kind = Annotated[str, Field(min_length=1, max_length=256)]
    else:
        # Out-of-range numbers are served (and logged, so drift shows); non-finite ones are not.
        kind = Annotated[float, Field(allow_inf_nan=False)]
    return kind | None if feature.nullable else kind


def record_model(card: models.Card) -> type[pydantic.BaseModel]:
    """A strict pydantic model of one input row of this card's model."""
    fields: dict[str, Any] = {}
    for feature in card.features:
        default = None if feature.nullable else ...
        fields[feature.name] = (_field_type(feature), Field(default=default))
    return pydantic.create_model("Record", __config__=_STRICT, **fields)


def records_type(card: models.Card, max_rows: int) -> Any:
    """The `records` parameter type: 1..max_rows rows."""
    return Annotated[list[record_model(card)], Field(min_length=1, max_length=max_rows)]  # type: ignore[misc]


GenericRecords = Annotated[list[dict[str, Any]], Field(min_length=1)]
"""Used only when the module is imported without a config (e.g. `bentoml build`)."""
