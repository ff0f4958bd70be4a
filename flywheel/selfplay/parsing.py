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
import re

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
    """Rename the first defined function (and every call to it) to `f`; None without a def."""
    match = DEF.search(code)
    if match is None:
        return None
    name = match.group(1)
    if name == "f":
        return code
    return re.sub(rf"\b{re.escape(name)}\s*\(", "f(", code)


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
