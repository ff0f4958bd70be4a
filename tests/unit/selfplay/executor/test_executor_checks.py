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
]

REFUSED = {
    "import os\ndef f(x):\n    return 1": "import of 'os'",
    "import os.path\ndef f(x):\n    return 1": "import of 'os.path'",
    "from os import path\ndef f(x):\n    return 1": "import from 'os'",
    "import random\ndef f(x):\n    return 1": "import of 'random'",
    "from . import x\ndef f(x):\n    return 1": "import from None",
    "from math import *\ndef f(x):\n    return 1": "importing '*'",
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
    "def f(x):\n    return ().__class__": "attribute '__class__'",
    "def f(x):\n    return object.__subclasses__()": "attribute '__subclasses__'",
    "def f(x):\n    return f.__globals__": "attribute '__globals__'",
    "def f(x):\n    return int.mro()": "attribute 'mro'",
    "def f(x):\n    return f.__code__.co_consts": "attribute '__code__'",
    "def f(x):\n    g = (i for i in x)\n    return g.gi_frame.f_back": "attribute 'gi_frame'",
    "def f(x):\n    return '{0.__class__}'.format(x)": "attributes or items",
    "def f(x):\n    s = '{0.real}'\n    return s.format(x)": "only allowed on a string literal",
    "def f(x):\n    return str.format('{0.__class__}', x)": "only allowed on a string literal",
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
        ("1), (__import__('os')", False),  # would build a tuple, not a single call
        ("1)\nimport os\nf(1", False),
        ("().__class__", False),
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
