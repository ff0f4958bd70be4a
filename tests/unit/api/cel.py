"""Evaluate a CRD's x-kubernetes-validations (CEL) rules on an object, the way the API server does
after defaulting, using cel-python. Used to prove CEL rules and the pydantic validators agree."""

from __future__ import annotations

from typing import Any

import celpy

_env = celpy.Environment()


def defaulted(schema: dict[str, Any], obj: Any) -> Any:
    """Apply structural-schema defaults (what the API server does before validating)."""
    if not isinstance(obj, dict) or schema.get("type") != "object":
        if isinstance(obj, list) and "items" in schema:
            return [defaulted(schema["items"], o) for o in obj]
        return obj
    out = dict(obj)
    for name, prop in schema.get("properties", {}).items():
        if name not in out and "default" in prop:
            out[name] = prop["default"]
        if name in out:
            out[name] = defaulted(prop, out[name])
    return out


def failures(schema: dict[str, Any], obj: Any, path: str = "") -> list[str]:
    """Messages of every CEL rule that fails anywhere in obj."""
    found: list[str] = []
    if isinstance(obj, dict):
        for rule in schema.get("x-kubernetes-validations", []):
            program = _env.program(_env.compile(rule["rule"]))
            if not bool(program.evaluate({"self": celpy.json_to_cel(obj)})):
                found.append(f"{path}: {rule['message']}")
        for name, prop in schema.get("properties", {}).items():
            if name in obj:
                found.extend(failures(prop, obj[name], f"{path}.{name}"))
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            found.extend(failures(schema["items"], item, f"{path}[{i}]"))
    return found
