"""TEST FIXTURE: a real trainer export that fails on some inputs, for the shadow-failure tests.

`load` is a serving-config loader: it loads the model with the real loader
(flywheel.training.inference) and, when the model directory holds FAIL_RULE
({"feature": name, "above": value}), wraps it so that predict raises for any batch holding a row
whose feature is above the value (the failure is injected; the model and its answers are real).
`failing_copy` copies an export and adds the rule, leaving the shared export untouched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from flywheel.training import inference

LOADER = "tests.integration.serving.failing_model:load"
FAIL_RULE = "fail_when.json"


class FailingPredictor:
    def __init__(self, inner: inference.Predictor, feature: str, above: float) -> None:
        self.inner, self.feature, self.above = inner, feature, above

    def predict(self, frame: pd.DataFrame) -> Any:
        if (frame[self.feature] > self.above).any():
            raise ValueError(f"injected failure: {self.feature} above {self.above}")
        return self.inner.predict(frame)


def load(model_dir: Path, quantized: bool) -> Any:
    predictor = inference.load(Path(model_dir), quantized)
    rule = Path(model_dir) / FAIL_RULE
    if not rule.exists():
        return predictor
    spec = json.loads(rule.read_text())
    return FailingPredictor(predictor, str(spec["feature"]), float(spec["above"]))


def failing_copy(source: Path, target: Path, feature: str, above: float) -> Path:
    """A copy of the export at `source` that fails on rows with `feature` > `above`."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    (target / FAIL_RULE).write_text(json.dumps({"feature": feature, "above": above}))
    return target
