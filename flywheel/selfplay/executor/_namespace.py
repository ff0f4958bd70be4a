"""What a sandboxed program sees: filtered copies of the allowed modules and a builtins table.

This is a convenience layer, not the boundary (that is `_kernel`'s seccomp filter): it keeps the
obvious doors shut so that ordinary programs fail with a clear message instead of EPERM, and the
trainer's static check (`checks.py`) reads the module list from here.

One rule matters for escapes: every callable this module hands to programs (`__import__`,
`print`, the stand-ins for `random`'s unseeded draws) is compiled in a namespace holding only what
it needs, so its `__globals__` leads nowhere (a lambda defined in the zygote's own file used to
carry `os`, `sys` and `ctypes` in its globals).

Standard library only: the zygote (`_worker.py`) imports this file by path.
"""

from __future__ import annotations

import builtins
import os
import types
from typing import Any

ALLOWED_MODULES = [
    "math",
    "cmath",
    "itertools",
    "functools",
    "collections",
    "collections.abc",
    "string",
    "re",
    "heapq",
    "bisect",
    "copy",
    "operator",
    "statistics",
    "fractions",
    "decimal",
    "typing",
    "json",
    "dataclasses",
    "enum",
    "textwrap",
    "numbers",
    "array",
    "unicodedata",
]
# Names that evaluate strings as code (annotations, forward references, format fields) or reflect
# attributes by name; each would turn a string the static check cannot see into code.
DENIED_MODULE_ATTRS = frozenset(
    [
        "attrgetter",
        "methodcaller",
        "get_type_hints",
        "ForwardRef",
        "Formatter",
        "singledispatch",
        "singledispatchmethod",
        "get_annotations",
    ]
)
SAFE_BUILTIN_NAMES = [
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
    "classmethod", "complex", "dict", "divmod", "enumerate", "filter", "float", "format",
    "frozenset", "hash", "hex", "int", "isinstance", "issubclass", "iter", "len", "list", "map",
    "max", "min", "next", "object", "oct", "ord", "pow", "property", "range", "repr", "reversed",
    "round", "set", "slice", "sorted", "staticmethod", "str", "sum", "super", "tuple", "type",
    "zip", "hasattr", "id", "__build_class__", "NotImplemented", "Ellipsis",
]  # fmt: skip

# Compiled with nothing but these names in scope (see the module docstring).
_SOURCE = """
def __import__(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and type(name) is str and name in modules:
        if fromlist or "." not in name:
            return modules[name]
        return modules[name.split(".")[0]]
    raise ImportError("import of %s is not allowed" % (repr(name)[:80],))

def print(*args, **kwargs):
    return None

def unseeded(*args, **kwargs):
    raise RuntimeError("sandbox: unseeded random draws are not allowed (pass a seed)")
"""


def _clean_callables(modules: dict[str, Any]) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "__builtins__": {
            "ImportError": ImportError,
            "RuntimeError": RuntimeError,
            "type": type,
            "str": str,
            "repr": repr,
        },
        "modules": modules,
    }
    exec(compile(_SOURCE, "<sandbox>", "exec", dont_inherit=True), scope)
    return {name: scope[name] for name in ("__import__", "print", "unseeded")}


def _import_random_without_fork_hook() -> Any:
    """`random` (which `statistics` imports) without its at-fork reseed hook: that hook reseeded the
    global generator in every forked child (~45 copy-on-write faults per execution)."""
    register = os.register_at_fork
    os.register_at_fork = lambda **hooks: None
    try:
        import random
    finally:
        os.register_at_fork = register
    return random


def build() -> tuple[dict[str, types.ModuleType], dict[str, Any]]:
    """(filtered module copies by name, the builtins table) for the zygote to fork with."""
    random = _import_random_without_fork_hook()
    modules: dict[str, types.ModuleType] = {}
    callables = _clean_callables(modules)
    # The global generator is reachable only through `statistics` draws without a seed; such a draw
    # is non-deterministic anyway, so it fails at once (`samples(n, seed=...)` still works).
    for name, value in vars(random).items():
        if getattr(value, "__self__", None) is random._inst:
            setattr(random, name, callables["unseeded"])
    for name in ALLOWED_MODULES:
        real = __import__(name, fromlist=["_"])
        copy = types.ModuleType(name)
        for attr, value in vars(real).items():
            if attr.startswith("_") or attr in DENIED_MODULE_ATTRS or isinstance(value, types.ModuleType):
                continue
            setattr(copy, attr, value)
        modules[name] = copy
    for name in ALLOWED_MODULES:  # `import collections.abc` then `collections.abc.X`
        package, _, child = name.rpartition(".")
        if package:
            setattr(modules[package], child, modules[name])
    table = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES}
    for name, value in vars(builtins).items():
        if isinstance(value, type) and issubclass(value, BaseException):
            table[name] = value
    table["__import__"], table["print"] = callables["__import__"], callables["print"]
    return modules, table
