"""A champion given by uri shows its card's version in status (promotion or rollback by uri)."""

from __future__ import annotations

import json

from flywheel.api import contract
from flywheel.controllers import deployment_models as models
from flywheel.local.runners import deployment


def test_uri_model_takes_its_version_from_the_card(tmp_path):
    (tmp_path / contract.MODEL_CARD).write_text(json.dumps({"version": "shuttle-1a2b3c4d"}))
    model = models.Model(tmp_path.as_uri(), True, None)
    assert deployment._with_card_version(model).version == "shuttle-1a2b3c4d"


def test_a_known_version_is_kept_and_a_missing_card_leaves_it_unknown(tmp_path):
    known = models.Model(tmp_path.as_uri(), True, "from-status")
    assert deployment._with_card_version(known) == known
    missing = models.Model((tmp_path / "nothing").as_uri(), True, None)
    assert deployment._with_card_version(missing).version is None
