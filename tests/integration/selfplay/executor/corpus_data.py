"""Loads the YAML program corpora under tests/integration/selfplay/corpus/."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

CORPUS = pathlib.Path(__file__).resolve().parent.parent / "corpus"


def load(name: str) -> Any:
    return yaml.safe_load((CORPUS / name).read_text())
