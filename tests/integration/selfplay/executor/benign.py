"""Ordinary Absolute-Zero-style programs (deduction proposals): the sandbox must accept them and
answer exactly what plain Python answers. Each entry: (name, program, input)."""

from __future__ import annotations

PROGRAMS: list[tuple[str, str, str]] = [
    ("reverse_words", "def f(s):\n    return ' '.join(reversed(s.split()))", "'the quick brown fox'"),
    (
        "fib",
        "def f(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
        "30",
    ),
    ("fact_rec", "def f(n):\n    return 1 if n <= 1 else n * f(n - 1)", "20"),
    (
        "count_chars",
        "from collections import Counter\ndef f(s):\n    return sorted(Counter(s).items())",
        "'mississippi'",
    ),
    (
        "most_common",
        "from collections import Counter\ndef f(xs):\n    return Counter(xs).most_common(2)",
        "[1, 2, 2, 3, 3, 3]",
    ),
    (
        "primes",
        "def f(n):\n    sieve = [True] * (n + 1)\n    out = []\n    for i in range(2, n + 1):\n        if sieve[i]:\n            out.append(i)\n            for j in range(i * i, n + 1, i):\n                sieve[j] = False\n    return out",
        "50",
    ),
    ("gcd_lcm", "import math\ndef f(a, b):\n    return (math.gcd(a, b), a * b // math.gcd(a, b))", "12, 18"),
    (
        "star_import_math",
        "from math import *\ndef f(x):\n    return [floor(sqrt(x)), ceil(log2(x)), factorial(5)]",
        "17",
    ),
    (
        "dataclass_point",
        "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n    y: int = 0\n    def norm1(self):\n        return abs(self.x) + abs(self.y)\ndef f(a, b):\n    p = P(a, b)\n    return [p.norm1(), str(p), p == P(a, b)]",
        "3, -4",
    ),
    (
        "dataclass_order",
        "from dataclasses import dataclass, field\n@dataclass(order=True)\nclass Item:\n    w: int\n    name: str = field(compare=False)\ndef f(xs):\n    return [i.name for i in sorted(Item(w, n) for n, w in xs)]",
        "[('a', 3), ('b', 1), ('c', 2)]",
    ),
    (
        "frozen_dataclass",
        "from dataclasses import dataclass\n@dataclass(frozen=True)\nclass K:\n    a: int\n    b: str\ndef f(x):\n    return len({K(x, 'a'), K(x, 'a'), K(x + 1, 'b')})",
        "5",
    ),
    (
        "class_name",
        "class Shape:\n    def describe(self):\n        return self.__class__.__name__.lower()\nclass Square(Shape):\n    pass\ndef f(n):\n    return [Square().describe() for _ in range(n)]",
        "2",
    ),
    (
        "slots",
        "class V:\n    __slots__ = ('x', 'y')\n    def __init__(self, x, y):\n        self.x, self.y = x, y\ndef f(a):\n    v = V(a, a * 2)\n    return [v.x + v.y, list(V.__slots__)]",
        "4",
    ),
    (
        "format_var",
        "def f(name, n):\n    template = '{0} has {1:03d} points'\n    return template.format(name, n)",
        "'ada', 7",
    ),
    ("fstring", "def f(x):\n    return f'{x:>6.2f}|{x!r}'", "3.14159"),
    ("format_spec_nested", "def f(x, w):\n    return '{0:>{1}}'.format(x, w)", "'ab', 5"),
    (
        "json_roundtrip",
        "import json\ndef f(d):\n    s = json.dumps(d, sort_keys=True)\n    return [s, json.loads(s) == d]",
        "{'b': [1, 2], 'a': None}",
    ),
    (
        "enum",
        "from enum import Enum\nclass Color(Enum):\n    RED = 1\n    GREEN = 2\ndef f(v):\n    return Color(v).name",
        "2",
    ),
    (
        "typing_annotations",
        "from typing import List, Dict\ndef f(xs: List[int]) -> Dict[int, int]:\n    return {x: x * x for x in xs}",
        "[1, 2, 3]",
    ),
    ("heap", "import heapq\ndef f(xs, k):\n    return heapq.nsmallest(k, xs)", "[5, 1, 9, 3, 7], 3"),
    (
        "bisect",
        "import bisect\ndef f(xs, v):\n    xs = sorted(xs)\n    return bisect.bisect_left(xs, v)",
        "[10, 3, 7, 1], 5",
    ),
    (
        "itertools_combos",
        "import itertools\ndef f(xs, r):\n    return list(itertools.combinations(xs, r))",
        "[1, 2, 3, 4], 2",
    ),
    (
        "itertools_groupby",
        "from itertools import groupby\ndef f(s):\n    return [(k, len(list(g))) for k, g in groupby(s)]",
        "'aaabccdddd'",
    ),
    (
        "accumulate",
        "import itertools\nimport operator\ndef f(xs):\n    return list(itertools.accumulate(xs, operator.mul))",
        "[1, 2, 3, 4, 5]",
    ),
    (
        "functools_reduce",
        "from functools import reduce\ndef f(xs):\n    return reduce(lambda a, b: a * 10 + b, xs, 0)",
        "[3, 1, 4, 1, 5]",
    ),
    (
        "lru_cache",
        "from functools import lru_cache\n@lru_cache(maxsize=None)\ndef g(n):\n    return n if n < 2 else g(n - 1) + g(n - 2)\ndef f(n):\n    return g(n)",
        "60",
    ),
    ("regex_findall", "import re\ndef f(s):\n    return re.findall(r'\\d+', s)", "'a1b22c333'"),
    (
        "regex_sub",
        "import re\ndef f(s):\n    return re.sub(r'(\\w)(\\w*)', lambda m: m.group(1).upper() + m.group(2), s)",
        "'hello big world'",
    ),
    ("string_module", "import string\ndef f(n):\n    return string.ascii_lowercase[:n][::-1]", "6"),
    (
        "caesar",
        "def f(s, k):\n    return ''.join(chr((ord(c) - 97 + k) % 26 + 97) if c.isalpha() else c for c in s)",
        "'attack at dawn', 3",
    ),
    (
        "palindromes",
        "def f(words):\n    return [w for w in words if w == w[::-1]]",
        "['level', 'abc', 'noon', 'x']",
    ),
    ("matrix_transpose", "def f(m):\n    return [list(r) for r in zip(*m)]", "[[1, 2, 3], [4, 5, 6]]"),
    (
        "matrix_mult",
        "def f(a, b):\n    return [[sum(x * y for x, y in zip(r, c)) for c in zip(*b)] for r in a]",
        "[[1, 2], [3, 4]], [[5, 6], [7, 8]]",
    ),
    (
        "binary_search",
        "def f(xs, t):\n    lo, hi = 0, len(xs) - 1\n    while lo <= hi:\n        mid = (lo + hi) // 2\n        if xs[mid] == t:\n            return mid\n        if xs[mid] < t:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1",
        "[1, 3, 5, 7, 9, 11], 9",
    ),
    (
        "bubble_sort",
        "def f(xs):\n    xs = list(xs)\n    for i in range(len(xs)):\n        for j in range(len(xs) - 1 - i):\n            if xs[j] > xs[j + 1]:\n                xs[j], xs[j + 1] = xs[j + 1], xs[j]\n    return xs",
        "[5, 2, 9, 1, 5, 6]",
    ),
    (
        "merge_sort",
        "def f(xs):\n    if len(xs) <= 1:\n        return xs\n    m = len(xs) // 2\n    a, b = f(xs[:m]), f(xs[m:])\n    out = []\n    while a and b:\n        out.append(a.pop(0) if a[0] <= b[0] else b.pop(0))\n    return out + a + b",
        "[38, 27, 43, 3, 9, 82, 10]",
    ),
    ("helper_first", "def helper(a):\n    return a * 3\ndef f(a):\n    return helper(a) + 1", "4"),
    (
        "nested_funcs",
        "def f(n):\n    def square(k):\n        return k * k\n    def total(m):\n        return sum(square(i) for i in range(m))\n    return total(n)",
        "10",
    ),
    (
        "closures",
        "def f(n):\n    adders = [lambda x, i=i: x + i for i in range(n)]\n    return [a(10) for a in adders]",
        "4",
    ),
    (
        "generator",
        "def gen(n):\n    for i in range(n):\n        if i % 3 == 0:\n            yield i * i\ndef f(n):\n    return list(gen(n))",
        "12",
    ),
    (
        "exceptions",
        "def f(xs):\n    out = []\n    for x in xs:\n        try:\n            out.append(10 // x)\n        except ZeroDivisionError:\n            out.append(None)\n    return out",
        "[2, 0, 5]",
    ),
    (
        "custom_exception",
        "class Bad(Exception):\n    pass\ndef f(x):\n    try:\n        if x < 0:\n            raise Bad('neg')\n        return 'ok'\n    except Bad as e:\n        return str(e)",
        "-1",
    ),
    (
        "stack_class",
        "class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, v):\n        self.items.append(v)\n    def pop(self):\n        return self.items.pop()\n    def __len__(self):\n        return len(self.items)\ndef f(xs):\n    s = Stack()\n    for x in xs:\n        s.push(x)\n    return [s.pop(), len(s)]",
        "[1, 2, 3]",
    ),
    (
        "operator_overload",
        "class Vec:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n    def __add__(self, o):\n        return Vec(self.x + o.x, self.y + o.y)\n    def __repr__(self):\n        return 'Vec(%d, %d)' % (self.x, self.y)\ndef f(a, b):\n    return repr(Vec(*a) + Vec(*b))",
        "(1, 2), (3, 4)",
    ),
    (
        "inheritance_super",
        "class A:\n    def __init__(self, v):\n        self.v = v\nclass B(A):\n    def __init__(self, v):\n        super().__init__(v * 2)\ndef f(x):\n    return B(x).v",
        "21",
    ),
    (
        "property",
        "class T:\n    def __init__(self, c):\n        self._c = c\n    @property\n    def f_deg(self):\n        return self._c * 9 / 5 + 32\ndef f(c):\n    return T(c).f_deg",
        "100",
    ),
    (
        "staticmethod",
        "class M:\n    @staticmethod\n    def add(a, b):\n        return a + b\n    @classmethod\n    def name(cls):\n        return cls.__name__\ndef f(a, b):\n    return [M.add(a, b), M.name()]",
        "2, 3",
    ),
    ("dict_comprehension", "def f(s):\n    return {c: s.count(c) for c in sorted(s)}", "'banana'"),
    ("set_ops_sorted", "def f(a, b):\n    return sorted(set(a) & set(b))", "[1, 2, 3, 4], [3, 4, 5]"),
    ("set_output_value", "def f(s):\n    return set(s)", "'hello'"),
    ("frozenset_len", "def f(xs):\n    return len(frozenset(xs))", "[1, 1, 2, 3, 3]"),
    (
        "deque_rotate",
        "from collections import deque\ndef f(xs, k):\n    d = deque(xs)\n    d.rotate(k)\n    return list(d)",
        "[1, 2, 3, 4, 5], 2",
    ),
    (
        "defaultdict_group",
        "from collections import defaultdict\ndef f(words):\n    g = defaultdict(list)\n    for w in words:\n        g[len(w)].append(w)\n    return dict(sorted(g.items()))",
        "['a', 'bb', 'cc', 'ddd']",
    ),
    (
        "ordereddict",
        "from collections import OrderedDict\ndef f(pairs):\n    d = OrderedDict(pairs)\n    d.move_to_end(pairs[0][0])\n    return list(d)",
        "[('x', 1), ('y', 2), ('z', 3)]",
    ),
    (
        "namedtuple",
        "from collections import namedtuple\nPt = namedtuple('Pt', 'x y')\ndef f(a, b):\n    p = Pt(a, b)\n    return [p.x * p.y, p._asdict()]",
        "3, 4",
    ),
    (
        "fractions",
        "from fractions import Fraction\ndef f(a, b):\n    return str(Fraction(a, b) + Fraction(1, 3))",
        "1, 6",
    ),
    (
        "decimal",
        "from decimal import Decimal, getcontext\ndef f(x):\n    getcontext().prec = 6\n    return str(Decimal(1) / Decimal(x))",
        "7",
    ),
    (
        "statistics",
        "import statistics\ndef f(xs):\n    return [statistics.mean(xs), statistics.median(xs)]",
        "[1, 3, 5, 7, 100]",
    ),
    (
        "copy_deep",
        "import copy\ndef f(xs):\n    ys = copy.deepcopy(xs)\n    ys[0].append(9)\n    return [xs, ys]",
        "[[1], [2]]",
    ),
    (
        "textwrap",
        "import textwrap\ndef f(s, w):\n    return textwrap.wrap(s, w)",
        "'the quick brown fox jumps over the lazy dog', 10",
    ),
    ("cmath", "import cmath\ndef f(z):\n    return round(abs(cmath.sqrt(z)), 6)", "(3+4j)"),
    ("bytes_ops", "def f(b):\n    return [b.hex(), b[::-1], len(b)]", "b'\\x01\\x02abc'"),
    ("int_bits", "def f(n):\n    return [bin(n), n.bit_length(), bin(n).count('1')]", "1023"),
    (
        "divmod_base",
        "def f(n, b):\n    digits = []\n    while n:\n        n, r = divmod(n, b)\n        digits.append(r)\n    return digits[::-1]",
        "255, 16",
    ),
    (
        "roman",
        "def f(n):\n    vals = [(1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'), (50, 'L'), (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I')]\n    out = ''\n    for v, s in vals:\n        while n >= v:\n            out += s\n            n -= v\n    return out",
        "1994",
    ),
    (
        "anagram_groups",
        "def f(words):\n    groups = {}\n    for w in words:\n        groups.setdefault(''.join(sorted(w)), []).append(w)\n    return sorted(sorted(g) for g in groups.values())",
        "['eat', 'tea', 'tan', 'ate', 'nat', 'bat']",
    ),
    (
        "two_sum",
        "def f(xs, t):\n    seen = {}\n    for i, x in enumerate(xs):\n        if t - x in seen:\n            return [seen[t - x], i]\n        seen[x] = i\n    return []",
        "[2, 7, 11, 15], 9",
    ),
    (
        "max_subarray",
        "def f(xs):\n    best = cur = xs[0]\n    for x in xs[1:]:\n        cur = max(x, cur + x)\n        best = max(best, cur)\n    return best",
        "[-2, 1, -3, 4, -1, 2, 1, -5, 4]",
    ),
    (
        "lis",
        "def f(xs):\n    dp = [1] * len(xs)\n    for i in range(len(xs)):\n        for j in range(i):\n            if xs[j] < xs[i]:\n                dp[i] = max(dp[i], dp[j] + 1)\n    return max(dp)",
        "[10, 9, 2, 5, 3, 7, 101, 18]",
    ),
    (
        "edit_distance",
        "def f(a, b):\n    dp = list(range(len(b) + 1))\n    for i, ca in enumerate(a, 1):\n        prev, dp[0] = dp[0], i\n        for j, cb in enumerate(b, 1):\n            prev, dp[j] = dp[j], min(dp[j] + 1, dp[j - 1] + 1, prev + (ca != cb))\n    return dp[-1]",
        "'kitten', 'sitting'",
    ),
    (
        "bfs_grid",
        "from collections import deque\ndef f(grid):\n    h, w = len(grid), len(grid[0])\n    q = deque([(0, 0, 0)])\n    seen = {(0, 0)}\n    while q:\n        r, c, d = q.popleft()\n        if (r, c) == (h - 1, w - 1):\n            return d\n        for dr, dc in ((1, 0), (0, 1), (-1, 0), (0, -1)):\n            nr, nc = r + dr, c + dc\n            if 0 <= nr < h and 0 <= nc < w and grid[nr][nc] == 0 and (nr, nc) not in seen:\n                seen.add((nr, nc))\n                q.append((nr, nc, d + 1))\n    return -1",
        "[[0, 0, 1], [1, 0, 0], [1, 1, 0]]",
    ),
    (
        "dfs_components",
        "def f(edges, n):\n    adj = {i: [] for i in range(n)}\n    for a, b in edges:\n        adj[a].append(b)\n        adj[b].append(a)\n    seen, count = set(), 0\n    for s in range(n):\n        if s in seen:\n            continue\n        count += 1\n        stack = [s]\n        while stack:\n            v = stack.pop()\n            if v not in seen:\n                seen.add(v)\n                stack.extend(adj[v])\n    return count",
        "[(0, 1), (2, 3)], 5",
    ),
    (
        "flatten",
        "def f(xs):\n    out = []\n    for x in xs:\n        if isinstance(x, list):\n            out.extend(f(x))\n        else:\n            out.append(x)\n    return out",
        "[1, [2, [3, [4]], 5]]",
    ),
    (
        "run_length",
        "def f(s):\n    out = []\n    for c in s:\n        if out and out[-1][0] == c:\n            out[-1][1] += 1\n        else:\n            out.append([c, 1])\n    return ''.join(f'{c}{n}' for c, n in out)",
        "'aaabbbbcc'",
    ),
    (
        "word_freq_top",
        "def f(text):\n    counts = {}\n    for w in text.lower().split():\n        counts[w] = counts.get(w, 0) + 1\n    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:2]",
        "'a b a c b a'",
    ),
    ("zip_dict", "def f(keys, vals):\n    return dict(zip(keys, vals))", "['a', 'b', 'c'], [1, 2, 3]"),
    (
        "enumerate_filter",
        "def f(xs):\n    return [i for i, x in enumerate(xs) if x % 2 == 0]",
        "[3, 4, 6, 7, 8]",
    ),
    ("any_all", "def f(xs):\n    return [any(x > 5 for x in xs), all(x > 0 for x in xs)]", "[1, 2, 7]"),
    (
        "map_filter",
        "def f(xs):\n    return list(map(str, filter(lambda x: x % 3, xs)))",
        "[1, 2, 3, 4, 5, 6]",
    ),
    ("slicing", "def f(s):\n    return [s[::2], s[1::2], s[-3:]]", "'abcdefgh'"),
    (
        "str_methods",
        "def f(s):\n    return [s.title(), s.swapcase(), s.center(15, '*'), s.partition(' ')]",
        "'hello World'",
    ),
    ("tuple_unpack", "def f(pairs):\n    return [b - a for a, b in pairs]", "[(1, 4), (2, 9), (5, 5)]"),
    ("walrus", "def f(xs):\n    return [y for x in xs if (y := x * x) > 10]", "[1, 3, 4, 5]"),
    (
        "match_statement",
        "def f(cmd):\n    match cmd.split():\n        case ['go', direction]:\n            return 'going ' + direction\n        case ['stop']:\n            return 'stopped'\n        case _:\n            return 'unknown'",
        "'go north'",
    ),
    (
        "global_counter",
        "counter = 0\ndef f(n):\n    global counter\n    for _ in range(n):\n        counter += 1\n    return counter",
        "5",
    ),
    (
        "random_seeded",
        "import statistics\ndef f(seed):\n    return [round(v, 6) for v in statistics.NormalDist(0, 1).samples(3, seed=seed)]",
        "42",
    ),
    (
        "while_collatz",
        "def f(n):\n    steps = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n        steps += 1\n    return steps",
        "27",
    ),
    (
        "nested_data",
        "def f(d):\n    return {k: sum(v) for k, v in d.items() if v}",
        "{'a': [1, 2], 'b': [], 'c': [5]}",
    ),
    (
        "sorted_key",
        "def f(people):\n    return [p[0] for p in sorted(people, key=lambda p: (p[1], p[0]))]",
        "[('bob', 30), ('al', 25), ('cy', 30)]",
    ),
    ("unicode", "import unicodedata\ndef f(s):\n    return [unicodedata.name(c) for c in s]", "'aé'"),
    (
        "array_module",
        "import array\ndef f(xs):\n    a = array.array('i', xs)\n    a.reverse()\n    return a.tolist()",
        "[1, 2, 3]",
    ),
    (
        "abc_iterable",
        "from collections.abc import Iterable\ndef f(x):\n    return [isinstance(x, Iterable), isinstance(5, Iterable)]",
        "[1]",
    ),
]
