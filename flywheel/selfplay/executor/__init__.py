"""Sandboxed execution of self-play programs: static policy check plus a pool of jailed workers.

with executor.Pool(workers=2) as pool:
    result = pool.run_program("def f(x):\\n    return x * 2", "3")   # ExecResult(ok=True, '6', ...)
    pool.check_output(code, "3", "6")                               # abduction
    pool.check_function(code, [("3", "6"), ("1", "2")])             # induction hidden pairs
    executor.eval_literal_equal("{1, 2}", "{2, 1}")                 # deduction, no executor
"""

from flywheel.selfplay.executor.checks import ALLOWED_MODULES, eval_literal_equal, static_check
from flywheel.selfplay.executor.pool import ExecResult, Kind, Pool, SandboxUnavailable

__all__ = [
    "ALLOWED_MODULES",
    "ExecResult",
    "Kind",
    "Pool",
    "SandboxUnavailable",
    "eval_literal_equal",
    "static_check",
]
