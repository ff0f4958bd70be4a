"""Parsing of model text, rule by rule, as the reference's parsers behave."""

from __future__ import annotations

from flywheel.selfplay import parsing


def wrap(body: str) -> str:
    return f"<think> plan </think> <answer>{body}</answer>"


def test_format_needs_think_then_answer_from_the_start() -> None:
    assert parsing.format_ok("<think>x</think>\n<answer>y</answer> trailing text is fine")
    assert not parsing.format_ok("<answer>y</answer>")
    assert not parsing.format_ok("hello <think>x</think><answer>y</answer>")
    assert not parsing.format_ok("<think>x</think> <answer>unclosed")


def test_answer_is_after_the_last_answer_tag() -> None:
    assert parsing.answer("<answer>a</answer> <answer> b </answer>") == "b"
    assert parsing.answer("no tags") == ""


def test_program_proposal_takes_first_block_and_renames_first_def() -> None:
    body = (
        "```python\nimport math\ndef g(x):\n    return helper(x)\ndef helper(y):\n    return y\n```\n"
        "```python\ndef other(): pass\n```\n```input\n3\n```\n```input\n4\n```"
    )
    parsed = parsing.parse_program_proposal(wrap(body))
    assert parsed is not None
    assert parsed.code.startswith("import math\ndef f(x):")
    assert "helper(x)" in parsed.code  # only the first def is renamed
    assert parsed.input == "3"
    assert parsed.imports == ("import math",)


def test_program_proposal_input_line_fallback_and_failures() -> None:
    assert (
        parsing.parse_program_proposal(wrap("```python\ndef f(a):\n    return a\n```\n# Input: 5")).input
        == "5"
    )
    assert parsing.parse_program_proposal(wrap("```python\ndef f(a):\n    return a\n```")) is None
    assert parsing.parse_program_proposal(wrap("```python\nx = 1\n```\n```input\n1\n```")) is None
    assert parsing.parse_program_proposal("```python\ndef f(a): return a\n```\n```input\n1\n```") is None


def test_induction_takes_last_n_inputs_and_a_message() -> None:
    inputs = "".join(f"```input\n{i}\n```\n" for i in range(12))
    parsed = parsing.parse_induction_proposal(wrap(inputs + "```message\nadd one\n```"), 10)
    assert parsed is not None
    assert parsed.inputs == tuple(str(i) for i in range(2, 12))
    assert parsed.message == "add one"
    tag = parsing.parse_induction_proposal(wrap(inputs + "<message>tagged</message>"), 10)
    assert tag is not None and tag.message == "tagged"
    line = parsing.parse_induction_proposal(wrap(inputs + "# Message: a line"), 10)
    assert line is not None and line.message == "a line"
    assert parsing.parse_induction_proposal(wrap(inputs), 10) is None  # no message
    assert parsing.parse_induction_proposal(wrap(inputs + "```message\nm\n```"), 13) is None  # too few


def test_solver_value_last_block_then_fallbacks() -> None:
    assert parsing.solver_value(wrap("```output\n1\n```\n```output\n2\n```"), "output") == "2"
    assert parsing.solver_value(wrap("# Input: 'a', 3"), "input") == "'a', 3"
    assert parsing.solver_value(wrap("<input>[1]</input>"), "input") == "[1]"
    assert parsing.solver_value(wrap("I think the output is 42."), "output") == "42"
    assert parsing.solver_value(wrap(" 7 "), "output") == "7"


def test_solver_code_is_the_last_fenced_block() -> None:
    body = "```python\ndef f(a): return 1\n```\n```\ndef f(a): return 2\n```"
    assert parsing.solver_code(wrap(body)) == "def f(a): return 2"
    assert parsing.solver_code(wrap("def f(a): return 1")) is None


def test_helper_first_program_keeps_its_f_and_its_helper() -> None:
    # The reference renames the first def; with a helper first that made f call itself.
    code = "def helper(a):\n    return a * 2\ndef f(a):\n    return helper(a) + 1"
    assert parsing.rename_entry(code) == code
    parsed = parsing.parse_program_proposal(wrap(f"```python\n{code}\n```\n```input\n3\n```"))
    assert parsed is not None and parsed.code == code


def test_rename_touches_names_not_attributes_or_strings() -> None:
    code = "def g(x):\n    # g( in a comment\n    return obj.g(x) + len('g(') if x else g(x - 1)"
    assert parsing.rename_entry(code) == (
        "def f(x):\n    # g( in a comment\n    return obj.g(x) + len('g(') if x else f(x - 1)"
    )
    assert parsing.rename_entry("def g(x):\n    f = 2\n    return x + f") is None  # f means something else
    assert parsing.rename_entry("x = 1") is None
