"""Reading model text: the R1 <think>/<answer> format, fenced blocks, proposals and solver answers.

Every rule here follows the reference implementation's parsers (docs/selfplay.md lists them):
the proposer's program is the FIRST fenced block of the answer, its input the first ```input
block; induction takes the LAST n ```input blocks plus a message; solver answers take the LAST
block of the asked kind and fall back to looser forms, so a solver is only "malformed" when the
<think>/<answer> structure is missing (or, for induction, there is no code block at all).
"""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import tokenize

FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
FENCE = re.compile(r"```([A-Za-z0-9_\-]*)[ \t]*\n(.*?)```", re.DOTALL)
DEF = re.compile(r"^[ \t]*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


def format_ok(text: str) -> bool:
    """True when `text` (the response, with the prompt's opening <think> put back) has the shape
    `<think> ... </think> <answer> ... </answer>` from its start; text after </answer> is allowed."""
    return FORMAT.match(text.strip()) is not None


def answer(text: str) -> str:
    """Everything after the last <answer> up to the next </answer>; '' without an <answer> tag."""
    start = text.rfind("<answer>")
    if start < 0:
        return ""
    body = text[start + len("<answer>") :]
    end = body.find("</answer>")
    return (body if end < 0 else body[:end]).strip()


def blocks(text: str) -> list[tuple[str, str]]:
    """Fenced blocks as (language tag, body), in order."""
    return [(lang.lower(), body.strip("\n")) for lang, body in FENCE.findall(text)]


def _line(text: str, label: str) -> str | None:
    match = re.search(rf"^#\s*{label}:\s*(.+)$", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1).strip() if match else None


def rename_entry(code: str) -> str | None:
    """The program with its entry function named `f`; None without a def.

    A program that defines `f` at top level is left alone: its other functions are helpers, and
    renaming the first of them (what the reference does) would make `f` call itself. Otherwise the
    first top-level def is the entry (the reference's rule) and is renamed with every use of its
    name; attribute names (`obj.g`) and strings are not touched, and a program that already uses
    the name `f` for something else is rejected rather than given two meanings for it."""
    names = _top_level_defs(code)
    if not names:
        return None
    if "f" in names:
        return code
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return re.sub(rf"\b{re.escape(names[0])}\s*\(", "f(", code)  # the executor will reject it
    if any(t.type == tokenize.NAME and t.string == "f" for t in tokens):
        return None
    out, previous = [], None
    for t in tokens:
        rename = t.type == tokenize.NAME and t.string == names[0] and previous != "."
        out.append(t._replace(string="f") if rename else t)
        if t.type not in (tokenize.NL, tokenize.COMMENT):
            previous = t.string
    return _untokenize(code, tokens, out)


def _top_level_defs(code: str) -> list[str]:
    """Names of the functions defined at the top of the program, in order (a regex when it does
    not parse, so the executor, not the parser, reports the syntax error)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return [m.group(1) for m in DEF.finditer(code)]
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _untokenize(code: str, before: list[tokenize.TokenInfo], after: list[tokenize.TokenInfo]) -> str:
    """`code` with each renamed token replaced in place (same line, same column); everything else,
    spacing and comments included, stays byte for byte."""
    lines = code.splitlines(keepends=True)
    for old, new in sorted(zip(before, after, strict=True), key=lambda p: p[0].start, reverse=True):
        if old.string != new.string:
            row, col = old.start
            line = lines[row - 1]
            lines[row - 1] = line[:col] + new.string + line[col + len(old.string) :]
    return "".join(lines)


def imports(code: str) -> list[str]:
    """The program's import lines, rebuilt from the AST (they are prepended at every later run)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    lines: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            lines.append("import " + ", ".join(_alias(a) for a in node.names))
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = ", ".join(_alias(a) for a in node.names)
            lines.append(f"from {'.' * node.level}{node.module} import {names}")
    return list(dict.fromkeys(lines))


def _alias(alias: ast.alias) -> str:
    return f"{alias.name} as {alias.asname}" if alias.asname else alias.name


@dataclasses.dataclass(frozen=True)
class ProgramProposal:
    """A deduction/abduction proposal: a program defining `f` and one argument list."""

    code: str
    input: str
    imports: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class InductionProposal:
    """An induction proposal: n argument lists for a given program, and a message for the solver."""

    inputs: tuple[str, ...]
    message: str


def parse_program_proposal(response: str) -> ProgramProposal | None:
    """First fenced block = code (any language tag), first ```input block (or `# Input:`) = input."""
    text = answer(response)
    found = blocks(text)
    if not found:
        return None
    code = rename_entry(found[0][1])
    given = next((body for lang, body in found[1:] if lang == "input"), None)
    if given is None:
        given = _line(text, "Input")
    if code is None or not given or not given.strip():
        return None
    return ProgramProposal(code=code, input=given.strip(), imports=tuple(imports(code)))


def parse_induction_proposal(response: str, n: int) -> InductionProposal | None:
    """The last `n` ```input blocks (fewer fails) and a ```message block, <message> tag or
    `# Message:` line (none fails)."""
    text = answer(response)
    found = blocks(text)
    inputs = [body.strip() for lang, body in found if lang == "input" and body.strip()]
    if len(inputs) < n:
        return None
    message = next((body.strip() for lang, body in found if lang == "message"), None)
    if message is None:
        tag = re.search(r"<message>(.*?)</message>", text, re.DOTALL)
        message = tag.group(1).strip() if tag else _line(text, "Message")
    if not message:
        return None
    return InductionProposal(inputs=tuple(inputs[-n:]), message=message)


def solver_value(response: str, kind: str) -> str:
    """A solver's ```input or ```output answer: the last such block, else `# Input:` line,
    `input(...)`, `<input>` tag, 'the input is ...', else the whole answer text."""
    text = answer(response)
    found = [body for lang, body in blocks(text) if lang == kind]
    if found:
        return found[-1].strip()
    for pattern in (
        rf"^#\s*{kind}:\s*(.+)$",
        rf"{kind}\((.*)\)",
        rf"<{kind}>(.*?)</{kind}>",
        rf"the {kind} is\s*(.+)",
    ):
        match = re.search(pattern, text, re.MULTILINE | re.IGNORECASE | re.DOTALL)
        if match and match.group(1).strip():
            return match.group(1).strip().rstrip(".")
    return text.strip()


def solver_code(response: str) -> str | None:
    """An induction solver's program: the LAST fenced block of any language; None if there is none."""
    found = blocks(answer(response))
    return found[-1][1] if found else None
