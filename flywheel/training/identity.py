"""A model version that identifies the model: `<run name>-<12 hex>` of its content and identity.

The digest covers what serving loads (the fp32 weights as tensors, the fp32 and int8 ONNX files,
preprocessor.json) and the card's identifying fields (the spec, the data's content hash, the feature
schema, classes, architecture, which quantisation is served), never timestamps, metrics or the
machine's paths. So the same spec on the same data gives the same version, and a retrain that
changes either gives a new one, which is what makes a Deployment roll (its serving config carries
the version) and what drift comparisons and promotions record.

Measured on CPU (torch 2.13, onnxruntime static int8), in one process and with torchrun's 2 gloo
workers: two runs of the same spec on the same data write byte-identical weights, ONNX files and
preprocessor.json, so the version is reproducible there. Where training is not bit-reproducible
(GPU kernels, NCCL reductions in another order) a retrain gets a new version: a different model is
a different version, which is the point.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

DIGEST_CHARS = 12  # 48 bits: collisions among one run's versions are not a practical concern


def tensors_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes (not torch.save's zip, whose layout
    is torch's business)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def identity(card: Mapping[str, Any]) -> dict[str, Any]:
    """The card's fields that say which model this is (what it was asked to be and learnt from)."""
    data = card.get("data") or {}
    config = card.get("config") or {}
    quant = card.get("quantization") or {}
    inputs = card.get("inputs") or {"kind": "matrix"}
    # The built-in's `matrix` inputs are left out, so its versions stay what they were before cards
    # said how rows become inputs; a user model's inputs (tabular, tensors) are part of what it is.
    extra = {"inputs": inputs} if inputs.get("kind") != "matrix" else {}
    return {
        **extra,
        "name": card.get("name"),
        "namespace": card.get("namespace"),
        "spec": config.get("spec"),
        # The content hash identifies the data; without one, where it came from is the best we have.
        "data": {"hash": data["hash"]} if data.get("hash") else data,
        "task": card.get("task"),
        "target": card.get("target"),
        "classes": card.get("classes"),
        "features": card.get("features"),
        "architecture": card.get("architecture"),
        "quantization": {"method": quant.get("method"), "served": quant.get("served", True)},
    }


def version(name: str, card: Mapping[str, Any], digests: Mapping[str, str]) -> str:
    """`<name>-<digest>` of the identifying card fields and the content digests."""
    canonical = json.dumps(
        {"identity": identity(card), "content": dict(sorted(digests.items()))},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return f"{name}-{hashlib.sha256(canonical.encode()).hexdigest()[:DIGEST_CHARS]}"
