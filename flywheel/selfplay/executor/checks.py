"""What a self-play program may contain, decided from its syntax tree before anything runs.

Problem: the reference (Absolute Zero) bans a word list on import lines only, and its dotted entries
never match, so `import os` passes. Here the rule is an allow-list: only the modules below may be
imported, and names and attributes that lead back to reflection, code evaluation or the interpreter's
internals are refused wherever they appear. This is the first layer; the jailed worker process
(`_worker.py`: restricted builtins, filtered module copies, audit hook, rlimits, chroot, no network,
unprivileged uid) contains whatever this check misses.

Everything here parses text from a model in the trainer process, so every input is size-capped and
every parser failure becomes a reason, never an exception.
"""

from __future__ import annotations

import ast
import functools
import string

from flywheel.selfplay.executor import _worker

ALLOWED_MODULES = frozenset(_worker.ALLOWED_MODULES)
MAX_CODE_CHARS = 20_000
MAX_INPUT_CHARS = 4_000
MAX_LITERAL_CHARS = 20_000

BANNED_NAMES = frozenset(
    [
        "open",
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "breakpoint",
        "input",
        "help",
        "exit",
        "quit",
        "dir",
        "memoryview",
        "__builtins__",
        "__loader__",
        "__spec__",
        "__build_class__",
        "copyright",
        "credits",
        "license",
    ]
)
# Dunder attributes a program may use (operator protocol, `super().__init__`); every other
# `__x__` attribute (`__class__`, `__subclasses__`, `__globals__`, `__dict__`, ...) is refused.
ALLOWED_DUNDER_ATTRS = frozenset(
    [
        "__init__",
        "__name__",
        "__doc__",
        "__len__",
        "__iter__",
        "__next__",
        "__contains__",
        "__getitem__",
        "__setitem__",
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__hash__",
        "__repr__",
        "__str__",
        "__add__",
        "__sub__",
        "__mul__",
        "__bool__",
    ]
)
# Frame, generator, coroutine, traceback and code internals, and reflection helpers in safe modules.
BANNED_ATTRS = frozenset(
    [
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "f_trace",
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "ag_frame",
        "ag_code",
        "tb_frame",
        "tb_next",
        "func_globals",
        "func_code",
        "mro",
        "format_map",
        "attrgetter",
        "methodcaller",
        "get_type_hints",
        "ForwardRef",
        "Formatter",
        "vformat",
        "with_traceback",
        "_getframe",
        "modules",
    ]
)
BANNED_NODES = (ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.Await)


def _is_dunder(name: str) -> bool:
    return name.startswith("__")


def _check_format_string(receiver: ast.expr) -> str | None:
    """`"{0.__class__}".format(x)` reads attributes at run time: allow only plain fields."""
    if not (isinstance(receiver, ast.Constant) and isinstance(receiver.value, str)):
        return "str.format is only allowed on a string literal"
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(receiver.value) if field]
    except ValueError:
        return "malformed format string"
    if any("." in field or "[" in field for field in fields):
        return "format fields may not access attributes or items"
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.module_aliases: set[str] = set()

    def refuse(self, node: ast.AST, why: str) -> None:
        line = getattr(node, "lineno", 0)
        self.reasons.append(f"line {line}: {why}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                self.refuse(node, f"import of {alias.name!r} is not allowed")
            self.module_aliases.add(alias.asname or alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or node.module not in ALLOWED_MODULES:
            self.refuse(node, f"import from {node.module!r} is not allowed")
        for alias in node.names:
            if alias.name == "*" or alias.name.startswith("_") or alias.name in BANNED_ATTRS:
                self.refuse(node, f"importing {alias.name!r} is not allowed")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in BANNED_NAMES or (_is_dunder(node.id) and node.id != "__name__"):
            self.refuse(node, f"name {node.id!r} is not allowed")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if (
            (_is_dunder(attr) and attr not in ALLOWED_DUNDER_ATTRS)
            or attr in BANNED_ATTRS
            or attr.startswith("co_")
        ):
            self.refuse(node, f"attribute {attr!r} is not allowed")
        elif (
            attr.startswith("_") and isinstance(node.value, ast.Name) and node.value.id in self.module_aliases
        ):
            self.refuse(node, f"private module attribute {attr!r} is not allowed")
        elif attr == "format":
            why = _check_format_string(node.value)
            if why:
                self.refuse(node, why)
        self.generic_visit(node)

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, BANNED_NODES):
            self.refuse(node, f"{type(node).__name__} is not allowed")
        super().generic_visit(node)


def _check_tree(tree: ast.AST) -> list[str]:
    checker = _Checker()
    checker.visit(tree)
    return checker.reasons


def _parse(text: str, mode: str, limit: int, what: str) -> tuple[ast.AST | None, list[str]]:
    if len(text) > limit:
        return None, [f"{what} has {len(text)} characters, more than {limit}"]
    if "\x00" in text:
        return None, [f"{what} contains a NUL byte"]
    try:
        return ast.parse(text, mode=mode), []
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        return None, [f"{what} does not parse: {type(exc).__name__}: {str(exc)[:120]}"]


def static_check(code: str) -> list[str]:
    """Reasons the program may not run (empty list: it may). Needs a top-level `def f`."""
    return list(_static_check(code))


@functools.lru_cache(maxsize=4096)  # one program is checked for many inputs (induction, solver checks)
def _static_check(code: str) -> tuple[str, ...]:
    tree, reasons = _parse(code, "exec", MAX_CODE_CHARS, "program")
    if tree is None:
        return tuple(reasons)
    assert isinstance(tree, ast.Module)
    reasons = _check_tree(tree)
    if not any(isinstance(node, ast.FunctionDef) and node.name == "f" for node in tree.body):
        reasons.append("the program must define a top-level function `f`")
    return tuple(reasons)


def call_source(inputs: str) -> tuple[str, list[str]]:
    """`f(<inputs>)` as one call expression, or reasons; blocks `1), (evil` style injection."""
    source = f"f({inputs})"
    tree, reasons = _parse(source, "eval", MAX_INPUT_CHARS, "input")
    if tree is None:
        return source, reasons
    assert isinstance(tree, ast.Expression)
    body = tree.body
    if not (isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id == "f"):
        return source, ["input must be an argument list for a single call f(...)"]
    if "\n" in inputs.strip():
        return source, ["input must be one line"]
    return source, _check_tree(tree)


def literal(text: str) -> tuple[bool, object]:
    """(True, value) when text is a Python literal (`ast.literal_eval`), else (False, None)."""
    if not isinstance(text, str) or len(text) > MAX_LITERAL_CHARS or "\x00" in text:
        return False, None
    try:
        return True, ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def eval_literal_equal(a_repr: str, b_repr: str) -> bool:
    """Deduction check: both strings are literals and equal as values (`{1, 2}` == `{2, 1}`)."""
    ok_a, a = literal(a_repr)
    ok_b, b = literal(b_repr)
    if not (ok_a and ok_b):
        return False
    try:
        return bool(a == b)
    except (RecursionError, MemoryError):
        return False
