"""The static policy (`static_check`, `call_source`) and the literal helpers, without any process."""

from __future__ import annotations

import pytest

from flywheel.selfplay import executor
from flywheel.selfplay.executor import checks

OK_PROGRAMS = [
    "def f(x):\n    return x + 1",
    "import math\ndef f(x):\n    return math.floor(x * 2.5)",
    "from collections import Counter, deque\ndef f(s):\n    return dict(Counter(s))",
    "import itertools as it\ndef f(n):\n    return list(it.permutations(range(n)))",
    "class Box:\n    def __init__(self, v):\n        self.v = v\n    def __eq__(self, o):\n        return self.v == o.v\n"
    "def f(x):\n    return Box(x) == Box(x)",
    "def f(a, b=2):\n    def helper(y):\n        return y * b\n    return [helper(i) for i in range(a)]",
    "def f(x):\n    return '{} and {:>4}'.format(x, x)",
    "def f(x):\n    return f'{x!r}-{x:03d}'",
    "def f(x):\n    total = 0\n    for i in range(x):\n        total += i\n    return total\nif __name__ == '__main__':\n    pass",
    "class A:\n    def __init__(self):\n        super().__init__()\n        self._hidden = 1\ndef f(x):\n    return A()._hidden",
    "import re\ndef f(s):\n    return re.findall(r'\\d+', s)",
    "counter = 0\ndef f(x):\n    global counter\n    counter += 1\n    return counter",
    # Ordinary code the kernel boundary makes safe to allow (they were false rejections).
    "from math import *\ndef f(x):\n    return floor(sqrt(x))",
    "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n    y: int = 0\ndef f(a):\n    return P(a).x",
    "class A:\n    def name(self):\n        return self.__class__.__name__\ndef f(x):\n    return A().name()",
    "class V:\n    __slots__ = ('a', 'b')\ndef f(x):\n    return len(V.__slots__)",
    "def f(x):\n    fmt = '{0}-{0:>3}'\n    return fmt.format(x)",
    "import json\ndef f(d):\n    return json.dumps(d, sort_keys=True)",
    "from collections.abc import Iterable\ndef f(x):\n    return isinstance(x, Iterable)",
    "def f(x):\n    match x:\n        case [a, b]:\n            return a + b\n        case complex(real=r):\n            return r\n    return 0",
    "def f(x):\n    return '{0[1]} {0.real}'.format(x)",
]

REFUSED = {
    "import os\ndef f(x):\n    return 1": "import of 'os'",
    "import os.path\ndef f(x):\n    return 1": "import of 'os.path'",
    "from os import path\ndef f(x):\n    return 1": "import from 'os'",
    "import random\ndef f(x):\n    return 1": "import of 'random'",
    "from . import x\ndef f(x):\n    return 1": "import from None",
    "from functools import _lru_cache_wrapper\ndef f(x):\n    return 1": "'_lru_cache_wrapper'",
    "import collections\ndef f(x):\n    return collections._sys": "private module attribute",
    "from operator import attrgetter\ndef f(x):\n    return 1": "'attrgetter'",
    "import operator\ndef f(x):\n    return operator.methodcaller('x')": "'methodcaller'",
    "def f(x):\n    return open('/etc/passwd').read()": "name 'open'",
    "def f(x):\n    return eval('1')": "name 'eval'",
    "def f(x):\n    return getattr(x, 'real')": "name 'getattr'",
    "def f(x):\n    return __import__('os')": "name '__import__'",
    "def f(x):\n    return __builtins__": "name '__builtins__'",
    "def f(x):\n    return vars()": "name 'vars'",
    "def f(x):\n    return ().__class__.__base__": "attribute '__base__'",
    "def f(x):\n    return object.__subclasses__()": "attribute '__subclasses__'",
    "def f(x):\n    return f.__globals__": "attribute '__globals__'",
    "def f(x):\n    return int.mro()": "attribute 'mro'",
    "def f(x):\n    return f.__code__.co_consts": "attribute '__code__'",
    "def f(x):\n    g = (i for i in x)\n    return g.gi_frame.f_back": "attribute 'gi_frame'",
    "def f(x):\n    return '{0.__class__}'.format(x)": "format field attribute '__class__'",
    "def f(x):\n    s = '{0.__globals__}'\n    return s.format(f)": "format field attribute '__globals__'",
    "def f(x):\n    return str.format('{0.__globals__}', f)": "format field attribute '__globals__'",
    # A replacement field nested in a format spec reads attributes too.
    "def f(x):\n    return '{0:{1.__globals__}}'.format(1, f)": "format field attribute '__globals__'",
    "def f(x):\n    return '{0:{1[0]}{1._x}}'.format(1, f)": "format field attribute '_x'",
    # Class patterns name the attributes they read as plain strings.
    "def f(x):\n    match f:\n        case object(__globals__=g):\n            return g\n": "match attribute '__globals__'",
    "def f(x):\n    match f:\n        case type(__subclasses__=s):\n            return 1\n": "'__subclasses__'",
    # Strings evaluated as code by typing and by annotation evaluation.
    "import typing\ndef f(x):\n    return typing.ForwardRef('1')": "'ForwardRef'",
    "import typing\ndef f(x):\n    return typing.get_type_hints(f)": "'get_type_hints'",
    "from functools import singledispatch\ndef f(x):\n    return 1": "'singledispatch'",
    "import functools\ndef f(x):\n    return functools.singledispatch(f)": "'singledispatch'",
    "def f(x):\n    return x._evaluate(None, None)": "'_evaluate'",
    # Dunder names as strings name attributes without attribute syntax: a metaclass built with
    # type() whose __instancecheck__ makes anything match, a __match_args__ read by a class pattern.
    "M = type('M', (type,), {'__instancecheck__': lambda c, o: True})\ndef f(x):\n    return 1": "'__instancecheck__'",
    "C = type('C', (), {'__match_args__': ('__globals__',)})\ndef f(x):\n    return 1": "'__match_args__'",
    "def f(x):\n    return object.__getattribute__(x, '__globals__')": "'__globals__'",
    "def f(x):\n    return '{a.b}'.format_map({})": "'format_map'",
    "async def f(x):\n    return 1": "AsyncFunctionDef",
    "def g(x):\n    return 1": "top-level function `f`",
    "def f(x)\n    return 1": "does not parse",
    "def f(x):\n    return 1\x00": "NUL byte",
}


@pytest.mark.parametrize("code", OK_PROGRAMS)
def test_allowed_programs_pass(code: str) -> None:
    assert executor.static_check(code) == []


@pytest.mark.parametrize(("code", "why"), list(REFUSED.items()))
def test_refused_programs_name_the_reason(code: str, why: str) -> None:
    reasons = executor.static_check(code)
    assert reasons, code
    assert any(why in reason for reason in reasons), reasons


@pytest.mark.parametrize("length", [680, 5000, 19000])
def test_a_deep_expression_is_a_reason_never_a_recursion_error(length: int) -> None:
    # `x+x+...` parses into a left-deep tree; a recursive visitor raised RecursionError here.
    deep = "x+" * (length // 2) + "x"
    assert isinstance(executor.static_check(f"def f(x):\n    return {deep}"), list)
    source, reasons = checks.call_source(deep[:3990])
    assert isinstance(reasons, list) and source.startswith("f(")
    assert checks.literal(deep) == (False, None)


@pytest.mark.parametrize(
    ("code", "sensitive"),
    [
        ("def f(x):\n    return list({'a', 'b'})", True),
        ("def f(x):\n    return sorted(set(x))", True),
        ("def f(x):\n    return [c for c in {c for c in x}]", True),
        ("def f(a, b):\n    return list(a.keys() & b.keys())", True),
        ("def f(x):\n    return hash(str(x)) & 1", True),
        ("def f(x):\n    return id(x) % 7", True),
        (
            "import collections.abc\ndef f(x):\n    return ''.join(collections.abc.KeysView({'a': 1}) | [x])",
            True,
        ),
        ("from collections.abc import KeysView\ndef f(x):\n    return list(KeysView({'a': 1}) | [x])", True),
        ("def f(x):\n    return sorted(x)", False),
        ("def f(x", False),  # does not parse: nothing to say
    ],
)
def test_seed_sensitive_marks_programs_whose_output_may_follow_the_hash_seed(
    code: str, sensitive: bool
) -> None:
    assert checks.seed_sensitive(code) is sensitive


def test_inputs_are_literal_arguments_only() -> None:
    # An expression input runs in the program's namespace before f: a walrus could rebind a builtin
    # f uses (or f itself) and choose the output the abduction checker compares.
    for forged in [
        "(sum := lambda *a: 424242) and 3",
        "len(f.__code__)",
        "x",
        "*[1, 2]",
        "**{'a': 1}",
        "1 + 1",
    ]:
        _, reasons = checks.call_source(forged)
        assert reasons, forged
    for fine in [
        "1, 2",
        "[1, (2, 'x')], k={'a': -1.5}",
        "-3",
        "1+2j",
        "None, True, b'x'",
        "{1, 2}, frozenset_like=()",
    ]:
        assert checks.call_source(fine)[1] == [], fine


def test_size_and_nesting_bombs_are_reasons_not_crashes() -> None:
    assert "more than" in executor.static_check("x = 1\n" * 5000)[0]
    nested = "def f(x):\n    return " + "(" * 5000 + "1" + ")" * 5000
    assert "does not parse" in executor.static_check(nested)[0]
    unary = "def f(x):\n    return " + "-" * 15000 + "1"
    assert executor.static_check(unary)  # RecursionError or MemoryError inside ast.parse, caught


@pytest.mark.parametrize(
    ("inputs", "ok"),
    [
        ("1, 2", True),
        ("[1, 2], key='a'", True),
        ("a=[1,2,3]", True),
        ("", True),
        ("1 + 1", False),  # an expression, not a literal
        ("1), (__import__('os')", False),  # would build a tuple, not a single call
        ("1)\nimport os\nf(1", False),
        ("().__class__.__base__", False),
        ("open('x')", False),
        ("x" * 5000, False),
    ],
)
def test_call_source_accepts_argument_lists_only(inputs: str, ok: bool) -> None:
    source, reasons = checks.call_source(inputs)
    assert source == f"f({inputs})"
    assert (reasons == []) is ok, reasons


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("{1, 2}", "{2, 1}", True),
        ("{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}", True),
        ("1, 2", "(1, 2)", True),
        ("0.3", "0.30000000000000004", False),
        ("'ab'", "ab", False),  # an unquoted name is not a literal
        ("[1, [2, 3]]", "[1, [2, 3]] ", True),
        ("__import__('os').system('x')", "0", False),
        ("(" * 300 + ")" * 300, "()", False),
        ("None", "None", True),
        ("set()", "set()", True),
    ],
)
def test_eval_literal_equal(a: str, b: str, equal: bool) -> None:
    assert executor.eval_literal_equal(a, b) is equal
    assert executor.Pool.eval_literal_equal(b, a) is equal


def test_literal_rejects_oversized_text() -> None:
    assert checks.literal("1" * (checks.MAX_LITERAL_CHARS + 1)) == (False, None)
    assert checks.literal("[1, 2]") == (True, [1, 2])
