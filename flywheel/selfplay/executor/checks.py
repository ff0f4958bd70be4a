"""What a self-play program may contain, decided from its syntax tree before anything runs.

Problem: the reference (Absolute Zero) bans a word list on import lines only, and its dotted entries
never match, so `import os` passes. Here the rule is an allow-list: only the modules below may be
imported, and names and attributes that lead back to reflection, code evaluation or the interpreter's
internals are refused wherever they appear.

This check is a filter, not the wall: it turns away the programs that would only fail in the
sandbox, and gives the model a reason. Whatever it misses (a string assembled at run time and fed
to `str.format`, say) meets the kernel's seccomp filter in the jailed child (`_kernel.py`), which
is what keeps the host safe; so the rules here stay permissive where ordinary programs need it
(`@dataclass`, `self.__class__.__name__`, `__slots__`, `fmt.format(x)`, `from math import *`).

Everything here parses text from a model in the trainer process, so every input is size-capped and
every failure (a parser's, or RecursionError/MemoryError on a deep tree) becomes a reason, never an
exception: the walk over the tree is iterative.
"""

from __future__ import annotations

import _string  # the parser behind string.Formatter: splits `0.attr[key]` field names
import ast
import functools
import string

from flywheel.selfplay.executor import _namespace

ALLOWED_MODULES = frozenset(_namespace.ALLOWED_MODULES)
MAX_CODE_CHARS = 20_000
MAX_INPUT_CHARS = 4_000
MAX_LITERAL_CHARS = 20_000

BANNED_NAMES = frozenset(
    [
        "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "getattr",
        "setattr", "delattr", "breakpoint", "input", "help", "exit", "quit", "dir", "memoryview",
        "__builtins__", "__loader__", "__spec__", "__build_class__", "copyright", "credits", "license",
    ]
)  # fmt: skip
# Dunder names a program may use: `__name__`, a class body's `__slots__`, a method's `__class__`.
ALLOWED_DUNDER_NAMES = frozenset(["__name__", "__slots__", "__class__"])
# Dunder attributes ordinary programs use (protocol methods, `super().__init__`,
# `self.__class__.__name__`); every other `__x__` attribute (`__subclasses__`, `__globals__`,
# `__base__`, `__mro__`, `__code__`, ...) is refused.
ALLOWED_DUNDER_ATTRS = frozenset(
    [
        "__init__", "__new__", "__post_init__", "__name__", "__qualname__", "__doc__", "__class__",
        "__slots__", "__len__", "__iter__", "__next__", "__reversed__", "__contains__",
        "__getitem__", "__setitem__", "__delitem__", "__missing__", "__eq__", "__ne__", "__lt__",
        "__le__", "__gt__", "__ge__", "__hash__", "__repr__", "__str__", "__format__", "__bool__",
        "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__",
        "__imul__", "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__",
        "__rmod__", "__divmod__", "__pow__", "__rpow__", "__neg__", "__pos__", "__abs__",
        "__invert__", "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__",
        "__lshift__", "__rshift__", "__index__", "__int__", "__float__", "__round__", "__call__",
        "__enter__", "__exit__", "__setattr__", "__getattr__", "__set_name__", "__matmul__",
    ]
)  # fmt: skip
# Frame, generator, coroutine, traceback and code internals, and names that evaluate strings as
# code or reflect attributes by name (they are also missing from the sandbox's module copies).
BANNED_ATTRS = frozenset(
    [
        "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace", "gi_frame", "gi_code",
        "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "tb_frame",
        "tb_next", "func_globals", "func_code", "mro", "format_map", "attrgetter", "methodcaller",
        "get_type_hints", "ForwardRef", "Formatter", "vformat", "with_traceback", "_getframe",
        "modules", "singledispatch", "singledispatchmethod", "get_annotations", "_evaluate",
        "cell_contents",
    ]
)  # fmt: skip
BANNED_NODES = (ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.Await)
# What makes output follow the hash seed (see pool.HASH_SEEDS): hashes themselves, and sets, whose
# iteration order follows the hashes (also through dict views and the collections.abc mixins).
SEEDED_NAMES = frozenset(
    ["set", "frozenset", "hash", "id", "object", "KeysView", "ItemsView", "Set", "MutableSet"]
) | {"AbstractSet", "FrozenSet", "get_origin", "get_args"}
SEEDED_ATTRS = frozenset(
    ["keys", "items", "union", "intersection", "difference", "symmetric_difference", "abc", "__hash__"]
) | {"KeysView", "ItemsView", "Set", "MutableSet"}


def _bad_attr(attr: str) -> bool:
    if attr.startswith("__"):
        return attr not in ALLOWED_DUNDER_ATTRS
    return attr in BANNED_ATTRS or attr.startswith("co_")


def _format_field_attrs(text: str, depth: int = 0) -> list[str]:
    """Attribute names a format string reads at run time (`"{0.__globals__}"`, also nested in a
    format spec: `"{0:{1.__globals__}}"`); raises ValueError on a malformed format string."""
    attrs = []
    for _, field, spec, _ in string.Formatter().parse(text):
        if field:
            _, rest = _string.formatter_field_name_split(field)
            attrs += [str(key) for is_attr, key in rest if is_attr]
        if spec and "{" in spec and depth < 3:
            attrs += _format_field_attrs(spec, depth + 1)
    return attrs


class _Checker:
    """Visits every node of a tree without recursion (deep expressions must not raise)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.module_aliases: set[str] = set()

    def refuse(self, node: ast.AST, why: str) -> None:
        line = getattr(node, "lineno", 0)
        self.reasons.append(f"line {line}: {why}")

    def run(self, tree: ast.AST) -> list[str]:
        for node in ast.walk(tree):
            if isinstance(node, BANNED_NODES):
                self.refuse(node, f"{type(node).__name__} is not allowed")
            visit = getattr(self, f"visit_{type(node).__name__}", None)
            if visit is not None:
                visit(node)
        return self.reasons

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                self.refuse(node, f"import of {alias.name!r} is not allowed")
            self.module_aliases.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or node.module not in ALLOWED_MODULES:
            self.refuse(node, f"import from {node.module!r} is not allowed")
        for alias in node.names:
            if alias.name != "*" and (alias.name.startswith("_") or alias.name in BANNED_ATTRS):
                self.refuse(node, f"importing {alias.name!r} is not allowed")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in BANNED_NAMES or (node.id.startswith("__") and node.id not in ALLOWED_DUNDER_NAMES):
            self.refuse(node, f"name {node.id!r} is not allowed")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if _bad_attr(attr):
            self.refuse(node, f"attribute {attr!r} is not allowed")
        elif (
            attr.startswith("_") and isinstance(node.value, ast.Name) and node.value.id in self.module_aliases
        ):
            self.refuse(node, f"private module attribute {attr!r} is not allowed")

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        # `case C(__globals__=g)` reads an attribute named by a plain string, not an ast.Attribute.
        for attr in node.kwd_attrs:
            if _bad_attr(attr) or attr.startswith("_"):
                self.refuse(node, f"match attribute {attr!r} is not allowed")

    def visit_Constant(self, node: ast.Constant) -> None:
        # A dunder name as a string names an attribute without attribute syntax: a `type()` dict
        # key (`__match_args__`, `__instancecheck__`), a `__match_args__` entry read by a class
        # pattern, a `__getattribute__` call's argument.
        text = node.value
        if isinstance(text, str) and text.startswith("__") and text != "__main__" and _bad_attr(text):
            self.refuse(node, f"the string {text[:40]!r} names an attribute that is not allowed")
        # Any string may reach str.format at run time: refuse one whose fields read attributes that
        # an ast.Attribute could not (a string built at run time is the kernel boundary's to hold).
        if not isinstance(node.value, str) or "{" not in node.value:
            return
        try:
            attrs = _format_field_attrs(node.value)
        except ValueError:
            return  # not a format string (a regex, say); str.format on it raises
        for attr in attrs:
            if _bad_attr(attr) or attr.startswith("_"):
                self.refuse(node, f"format field attribute {attr!r} is not allowed")


MAX_REASONS = 20  # enough to act on; a program of 20k refusals must not cost the trainer megabytes


def _check_tree(tree: ast.AST) -> list[str]:
    try:
        reasons = _Checker().run(tree)
        if len(reasons) > MAX_REASONS:
            return [*reasons[:MAX_REASONS], f"... and {len(reasons) - MAX_REASONS} more"]
        return reasons
    except Exception as exc:
        return [f"program could not be checked: {type(exc).__name__}"]


def _parse(text: str, mode: str, limit: int, what: str) -> tuple[ast.AST | None, list[str]]:
    if len(text) > limit:
        return None, [f"{what} has {len(text)} characters, more than {limit}"]
    if "\x00" in text:
        return None, [f"{what} contains a NUL byte"]
    try:
        return ast.parse(text, mode=mode), []
    except Exception as exc:
        return None, [f"{what} does not parse: {type(exc).__name__}: {str(exc)[:120]}"]


def static_check(code: str) -> list[str]:
    """Reasons the program may not run (empty list: it may). Needs a top-level `def f`."""
    return list(_analysis(code)[0])


def seed_sensitive(code: str) -> bool:
    """Whether the program's output may follow the hash seed: it hashes, takes ids or builds sets."""
    return _analysis(code)[1]


@functools.lru_cache(maxsize=4096)  # one program is checked for many inputs (induction, solver checks)
def _analysis(code: str) -> tuple[tuple[str, ...], bool]:
    """(reasons, seed-sensitive) from one parse of the program."""
    tree, reasons = _parse(code, "exec", MAX_CODE_CHARS, "program")
    if tree is None:
        return tuple(reasons), False
    assert isinstance(tree, ast.Module)
    reasons = _check_tree(tree)
    if not any(isinstance(node, ast.FunctionDef) and node.name == "f" for node in tree.body):
        reasons.append("the program must define a top-level function `f`")
    return tuple(reasons), _seeded(tree)


def _seeded(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Set, ast.SetComp)):
            return True
        if isinstance(node, ast.Name) and node.id in SEEDED_NAMES:
            return True
        if isinstance(node, ast.Attribute) and node.attr in SEEDED_ATTRS:
            return True
        if isinstance(node, ast.alias) and node.name.rpartition(".")[2] in SEEDED_NAMES | SEEDED_ATTRS:
            return True
    return False


def call_source(inputs: str) -> tuple[str, list[str]]:
    """`f(<inputs>)` as one call expression, or reasons; blocks `1), (evil` style injection.

    Every argument must be a literal (positional or `name=literal`): an input is data. An
    expression here would run in the program's namespace before `f` does, where a walrus could
    rebind a builtin `f` uses, or swap `f` itself, and so choose the output a checker compares."""
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
    arguments = [*body.args, *(keyword.value for keyword in body.keywords)]
    if any(isinstance(node, ast.Starred) for node in body.args) or any(k.arg is None for k in body.keywords):
        return source, ["input may not unpack (*args or **kwargs): write the arguments out"]
    for node in arguments:
        try:
            ast.literal_eval(node)
        except Exception:
            return source, [
                f"input argument {ast.get_source_segment(source, node) or '?'!s:.60} is not a literal"
            ]
    return source, []


def call_values(source: str) -> tuple[tuple[object, ...], dict[str, object]] | str:
    """The argument values of a checked call `f(<literals>)` (see call_source), or why not.

    The child calls `f(*args, **kwargs)` with these values: the input never runs as code there, so
    `f(set())` gets a set even where the program defines its own `set`."""
    try:
        call = ast.parse(source, mode="eval").body
        assert isinstance(call, ast.Call)
        args = tuple(ast.literal_eval(node) for node in call.args)
        kwargs = {str(k.arg): ast.literal_eval(k.value) for k in call.keywords}
    except Exception as exc:
        return f"input is not a list of literal arguments ({type(exc).__name__})"
    return args, kwargs


def literal(text: str) -> tuple[bool, object]:
    """(True, value) when text is a Python literal (`ast.literal_eval`), else (False, None)."""
    if not isinstance(text, str) or len(text) > MAX_LITERAL_CHARS or "\x00" in text:
        return False, None
    try:
        return True, ast.literal_eval(text.strip())
    except Exception:
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
