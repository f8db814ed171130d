"""Reading a Dockerfile as the builders read it: the official parser's edge cases, our checks on
top of it, and the stages (the parser is BuildKit's, through the `dockerfile` package)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfgov_ci.errors import ConfigError
from tfgov_ci.stages.build.dockerfile import Dockerfile, parse, read


def _parse(text: str) -> Dockerfile:
    return parse(text, Path("Dockerfile"), "Dockerfile")


def _error(text: str) -> tuple[str, int | None]:
    with pytest.raises(ConfigError) as caught:
        _parse(text)
    problem = caught.value.problems[0]
    assert problem.file == "Dockerfile"
    return problem.message, problem.line


def test_continuations_and_comments_inside_them_give_one_instruction_with_its_first_line() -> None:
    df = _parse(
        "FROM x\n# a comment\nRUN apt-get update && \\\n    # inside\n    apt-get install -y curl\nUSER 1\n"
    )
    run, user = df.final.instructions
    assert (run.keyword, run.line, run.end_line) == ("RUN", 3, 5)
    assert run.args == ("apt-get update &&     apt-get install -y curl",)
    assert not run.exec_form
    assert user.line == 6


def test_exec_form_is_a_json_array_and_invalid_json_falls_back_to_the_shell_form() -> None:
    df = _parse('FROM x\nRUN ["python3", "-m", "pip", "install", "-r", "r.txt"]\nCMD [ "not closed"\n')
    run, cmd = df.final.instructions
    assert run.exec_form and run.args == ("python3", "-m", "pip", "install", "-r", "r.txt")
    assert not cmd.exec_form and cmd.args == ('[ "not closed"',)  # what Docker does too


def test_the_escape_directive_changes_the_continuation_character() -> None:
    df = _parse("# escape=`\nFROM x\nRUN echo a \\\nUSER b `\n  c\n")
    run, user = df.final.instructions
    assert run.args == ("echo a \\",)  # a backslash no longer continues the line
    assert (user.args, user.line, user.end_line) == (("b   c",), 4, 5)


def test_heredocs_are_read_with_their_lines() -> None:
    df = _parse("FROM x\nRUN <<EOF\npip install y\nEOF\nCOPY <<EOT /app/x.txt\nhello\nEOT\nUSER 1\n")
    run, copy, user = df.final.instructions
    assert (run.heredocs, run.line, run.end_line) == (("EOF",), 2, 4)
    assert (copy.heredocs, copy.line) == (("EOT",), 5)
    assert user.line == 8


def test_stages_know_their_names_and_what_they_build_on() -> None:
    df = _parse(
        "ARG TF=2.13.0\nFROM tensorflow/tensorflow:${TF} AS Build\nRUN x\n"
        "FROM build AS again\nFROM 0\nFROM python:3.11\nCOPY --from=build /a /b\n"
    )
    assert [(s.image, s.name, s.parent, s.line) for s in df.stages] == [
        ("tensorflow/tensorflow:${TF}", "build", None, 2),
        ("build", "again", 0, 4),
        ("0", None, 0, 5),
        ("python:3.11", None, None, 6),
    ]
    assert df.final.instructions[0].flag("from") == "build"
    assert df.expand(df.stages[0].image) == ("tensorflow/tensorflow:2.13.0", ())
    assert df.expand("img:${NOPE}") == ("img:${NOPE}", ("NOPE",))
    assert df.expand("img:${NOPE:-1.0}") == ("img:1.0", ())


def test_lower_case_instructions_are_instructions() -> None:
    df = _parse("from x as y\nrun echo\n")
    assert df.final.name == "y" and df.final.instructions[0].keyword == "RUN"


def test_an_unknown_instruction_is_an_error_at_its_line() -> None:
    message, line = _error("FROM x\nRUNN echo\n")
    assert (message, line) == ("unknown instruction 'RUNN'", 2)


def test_a_json_array_broken_over_lines_says_how_to_continue_it() -> None:
    with pytest.raises(ConfigError) as caught:
        _parse('FROM x\nCMD ["python",\n  "train.py"]\n')
    problem = caught.value.problems[0]
    assert problem.line == 3 and "needs a '\\'" in (problem.hint or "")


def test_an_unterminated_heredoc_is_a_syntax_error_at_the_line_it_starts() -> None:
    message, line = _error("FROM x\nRUN true\nRUN <<EOF\nnever closed\n")
    assert "unterminated heredoc" in message and line == 3


def test_a_json_array_of_non_strings_is_a_syntax_error_at_its_line() -> None:
    message, line = _error('FROM x\nUSER 1\nRUN ["a", 1]\n')
    assert "strings only" in message and line == 3


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", "no instructions: the file is empty or only comments", None),
        ("# just a comment\n", "no instructions: the file is empty or only comments", None),
        ("ARG X=1\n", "no FROM instruction", 1),
        ("WORKDIR /app\nFROM x\n", "WORKDIR before the first FROM", 1),
        ("FROM x\nRUN\n", "RUN needs an argument", 2),
        ("FROM x\nCOPY a\n", "COPY needs at least 2 arguments", 2),
        ("FROM x AS\n", "FROM takes IMAGE [AS NAME]", 1),
    ],
)
def test_bad_dockerfiles_are_errors_with_their_line(text: str, message: str, line: int | None) -> None:
    assert _error(text) == (message, line)


def test_reading_a_missing_or_binary_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        read(tmp_path / "Dockerfile")
    (tmp_path / "Dockerfile").write_bytes(b"\xff\xfe\x00FROM")
    with pytest.raises(ConfigError, match="cannot read"):
        read(tmp_path / "Dockerfile")
