"""What the proposer and the solver see: the R1 wrapper and the six task prompts.

The wording follows the structure of the reference prompts (docs/selfplay.md): one wrapper for
every prompt that opens <think> so the response continues it, proposer prompts with K reference
snippets, and solver prompts built from a buffer entry. The reference swaps the "difficulty"
bullet between the abduction and deduction proposer prompts; here each prompt names its own task.

Imports: the reference prompt lists banned words its checker only half enforces; here the
proposer is told exactly what the executor's checker allows, the sentence built from
`executor.ALLOWED_MODULES` so the prompt cannot drift from the check.

Fitting the context: every prompt comes in two variants. The full one follows the reference
(1.2-2.3 kB for a proposer); the compact one says the same requirements in a few lines, without
the R1 preamble's prose, for policies whose context cannot hold the full one (the built-in tiny
policy has 768 bytes). `fitted` picks, per prompt, the full variant when it fits the policy's
prompt budget, else the compact one, and for proposers drops reference snippets (newest kept
first) until it fits; a prompt the policy would otherwise truncate from the left loses its task
statement, which is how the tiny example ended with every reward -1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from flywheel.selfplay import executor


def allowed_imports() -> str:
    """The sentence that tells a proposer which imports the executor accepts."""
    return "Import only these modules (nothing else; no file, network, clock or randomness): " + ", ".join(
        sorted(executor.ALLOWED_MODULES)
    )


R1 = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves "
    "it. The assistant first thinks about the reasoning process in the mind and then provides the "
    "user with the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>.\nUser: {task}\nAssistant: <think>"
)

CODE_REQUIREMENTS = """### Code Requirements:
- Name the entry function `f` (e.g., `def f(...): ...`); nested definitions are allowed
- Ensure the function returns a value and has at least one input parameter
- The function must be deterministic
- Make the snippet require state tracking across multiple data transformations
- AVOID THE FOLLOWING: random functions or variables, date/time operations, I/O operations \
(reading files, network requests), printing or logging, any external state
- The snippet must finish within 10 seconds
- Put imports and class definitions at the top, before `f`
- End with a return statement from `f`"""

PROPOSE_IO = """## Task: Create a Python code snippet (where custom classes are allowed, defined at the top) \
with one matching input. Make it an I.Q. test: {goal}
{requirements}
### Input Requirements:
- Provide exactly one input for your function
- Separate multiple arguments with commas; quote strings
### Formatting:
- Format your code with: ```python
def f(...):
    # your code here
    return ...
```
- Format your input with: ```input
arg1, arg2, ...
```
### Example Format:
```python
def f(name: str, info: dict):
    # code logic here
    return result
```
```input
'John', {{'age': 20, 'city': 'New York'}}
```
### Evaluation Criteria:
- Executability: your code runs without errors
- Difficulty in {difficulty}
- Creativity: sufficiently different from the reference snippets
- {allowed}
First, carefully devise a clear plan, then write the code snippet and its input.
### Reference Code Snippets:
{references}"""

GOALS = {
    "abduction": (
        "the output will be given, and the test subject must deduce a possible input",
        "predicting an input that produces the output",
    ),
    "deduction": (
        "the input will be given, and the test subject must deduce the output",
        "predicting the output from the input",
    ),
}

PROPOSE_FUNCTION = """## Task: Output {n} Inputs that can be plugged into the following Code Snippet \
to produce diverse Outputs, and give a message related to the given snippet.
A subset of your inputs and their outputs will be shown to a test subject, who must deduce the \
function from them and your message.
### Input Requirements:
- Give each input in its own ```input block; separate arguments with commas; quote strings
### Message Requirements:
- Put the message in a ```message block; it may be a hint or a coding question, but must not \
contain the code
### Evaluation Criteria:
- Executability, coverage of the input space, creativity (diverse inputs), and challenging but not \
impossible
### Code Snippet:
```python
{code}
```
f(<|YOUR INPUT WILL BE PLUGGED HERE|>)"""

SOLVE_ABDUCTION = """# Task: Provide One Possible Input of a Python Code Snippet Given the Code and Output
```python
{code}
```
```output
{output}
```
# Output Format:
```input
arg1, arg2, ...
```
Quote strings and separate multiple arguments with commas."""

SOLVE_DEDUCTION = """# Task: Deduce the Output of a Python Code Snippet Given the Code and Input
```python
{code}
```
```input
{input}
```
# Output Format:
```output
<your output>
```
Quote strings; give multiple return values as a tuple."""

SOLVE_INDUCTION = """# Task: Deduce the Function that Produced the Outputs from the Inputs
{requirements}
# Input and Output Pairs:
{pairs}
# Message:
```message
{message}
```
# Output Format:
```python
def f(...):
    # your code here
    return ...
```
Name your entry function `f()`!!!"""


def wrap(task: str) -> str:
    return R1.format(task=task)


def _reference(i: int, code: str, given: str, output: str) -> str:
    return (
        f"<snippet_{i}>\n```python\n{code}\n```\n```input\n{given}\n```\n"
        f"```output\n{output}\n```\n</snippet_{i}>"
    )


def propose_io(task: str, references: Sequence[tuple[str, str, str]]) -> str:
    """Abduction or deduction proposer prompt; references are (code, input, output) triplets."""
    goal, difficulty = GOALS[task]
    refs = "\n".join(_reference(i, *ref) for i, ref in enumerate(references))
    return wrap(
        PROPOSE_IO.format(
            goal=goal,
            requirements=CODE_REQUIREMENTS,
            difficulty=difficulty,
            allowed=allowed_imports(),
            references=refs,
        )
    )


def propose_function(code: str, n: int) -> str:
    return wrap(PROPOSE_FUNCTION.format(code=code, n=n))


def solve_abduction(code: str, output: str) -> str:
    return wrap(SOLVE_ABDUCTION.format(code=code, output=output))


def solve_deduction(code: str, given: str) -> str:
    return wrap(SOLVE_DEDUCTION.format(code=code, input=given))


def solve_induction(pairs: Sequence[tuple[str, str]], message: str) -> str:
    shown = "\n".join(
        f"```input_{k}\n{given}\n```\n```output_{k}\n{output}\n```" for k, (given, output) in enumerate(pairs)
    )
    return wrap(SOLVE_INDUCTION.format(requirements=CODE_REQUIREMENTS, pairs=shown, message=message))


# --- compact variants: the same tasks in as few bytes as a small context needs -------------------

R1_COMPACT = "Think in <think></think>, then answer in <answer></answer>.\nUser: {task}\nAssistant: <think>"

PROPOSE_IO_COMPACT = {
    "abduction": "Write a deterministic Python function f(...) returning a value, and one input. "
    "The output will be shown; find an input giving it.",
    "deduction": "Write a deterministic Python function f(...) returning a value, and one input. "
    "The input will be shown; predict the output.",
}


def compact(task: str) -> str:
    return R1_COMPACT.format(task=task)


def propose_io_compact(task: str, references: Sequence[tuple[str, str, str]]) -> str:
    refs = "".join(f"```python\n{code}\n```\n```input\n{given}\n```\n" for code, given, _ in references)
    return compact(
        f"{PROPOSE_IO_COMPACT[task]} {allowed_imports()}.\n"
        f"Answer: ```python block, then ```input block.\n{refs}".rstrip("\n")
    )


def propose_function_compact(code: str, n: int) -> str:
    return compact(
        f"Give {n} ```input blocks for f, diverse, and a ```message block hinting what f does.\n"
        f"```python\n{code}\n```"
    )


def solve_abduction_compact(code: str, output: str) -> str:
    return compact(
        f"Give an input for f that returns the output.\n```python\n{code}\n```\n```output\n{output}\n```"
    )


def solve_deduction_compact(code: str, given: str) -> str:
    return compact(f"Give the output of f for the input.\n```python\n{code}\n```\n```input\n{given}\n```")


def solve_induction_compact(pairs: Sequence[tuple[str, str]], message: str) -> str:
    shown = "".join(f"```input\n{given}\n```\n```output\n{output}\n```\n" for given, output in pairs)
    return compact(f"Write f in a ```python block to match the pairs.\n{shown}```message\n{message}\n```")


def fitted(variants: Sequence[Callable[[], str]], fits: Callable[[str], bool]) -> str:
    """The first variant whose prompt fits, else the last (the smallest)."""
    for build in variants[:-1]:
        prompt = build()
        if fits(prompt):
            return prompt
    return variants[-1]()


def fit_propose_io(task: str, references: Sequence[tuple[str, str, str]], fits: Callable[[str], bool]) -> str:
    """The full proposer prompt if it fits, else the compact one with as many references as fit."""
    refs = list(references)
    variants: list[Callable[[], str]] = [functools.partial(propose_io, task, refs)]
    variants += [functools.partial(propose_io_compact, task, refs[:k]) for k in range(len(refs), -1, -1)]
    return fitted(variants, fits)


def fit_propose_function(code: str, n: int, fits: Callable[[str], bool]) -> str:
    return fitted([lambda: propose_function(code, n), lambda: propose_function_compact(code, n)], fits)


def fit_solve_abduction(code: str, output: str, fits: Callable[[str], bool]) -> str:
    return fitted(
        [lambda: solve_abduction(code, output), lambda: solve_abduction_compact(code, output)], fits
    )


def fit_solve_deduction(code: str, given: str, fits: Callable[[str], bool]) -> str:
    return fitted([lambda: solve_deduction(code, given), lambda: solve_deduction_compact(code, given)], fits)


def fit_solve_induction(pairs: Sequence[tuple[str, str]], message: str, fits: Callable[[str], bool]) -> str:
    return fitted(
        [lambda: solve_induction(pairs, message), lambda: solve_induction_compact(pairs, message)], fits
    )
