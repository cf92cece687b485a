"""The documentation stays true: every command shown in README.md and docs/*.md parses with the real argument
parser, every sub-command and flag is in the command line reference, every relative link and every file path
the code names points at a file that exists, README.md stays a short guide, and the MkDocs site builds strictly.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from solov2.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
# Pages whose links are checked too (their commands are not `solov2 ...` lines).
LINKED = [*PAGES, ROOT / "benchmarks" / "README.md", ROOT / "benchmarks" / "mmdet_compare" / "README.md"]
# A dated log: its commands are quoted as they were run then, with placeholders such as {val,test}.
ARCHIVE = {ROOT / "docs" / "history.md"}
TOOLS = {"tools/train.py", "tools/test.py"}
README_LIMIT = 10 * 1024
INTERNAL_WORDS = re.compile(r"\b(seed|issues?|rounds?)\b", re.IGNORECASE)


def fenced_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, line)`` of the lines inside fenced code blocks, backslash continuations joined."""
    lines, fence, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence, pending = not fence, ""
            continue
        if not fence:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    return lines


def shown_commands(prefixes: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """``(where, argv)`` of every fenced line that starts (after an optional ``$ ``) with one of ``prefixes``."""
    found = []
    for path in PAGES:
        if path in ARCHIVE:
            continue
        for number, line in fenced_lines(path):
            text = line.strip().removeprefix("$ ")
            if not any(text == prefix or text.startswith(prefix + " ") for prefix in prefixes):
                continue
            try:
                words = shlex.split(text, comments=True)
            except ValueError as exc:  # unbalanced quotes: reported by the test, with the line
                words = [f"<{exc}>"]
            found.append((f"{path.relative_to(ROOT)}:{number}: {text}", words))
    return found


def parse_or_fail(parser: argparse.ArgumentParser, argv: list[str], where: str) -> argparse.Namespace:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}\n  does not parse: {stderr.getvalue().strip().splitlines()[-1]}")


SOLOV2_COMMANDS = shown_commands(("solov2",))
TOOL_COMMANDS = shown_commands(tuple(f"python {tool}" for tool in TOOLS))


def test_the_pages_show_commands():
    """The checks below see the commands (a change of fence syntax would otherwise pass them vacuously)."""
    assert len(SOLOV2_COMMANDS) > 40
    assert any("tools/train.py" in where for where, _ in TOOL_COMMANDS)


@pytest.mark.parametrize("where,words", SOLOV2_COMMANDS, ids=[w.split(": ")[0] for w, _ in SOLOV2_COMMANDS])
def test_solov2_command_parses(where, words):
    parse_or_fail(build_parser(), words[1:], where)


def load_tool(relative: str):
    spec = importlib.util.spec_from_file_location(f"docs_{Path(relative).stem}", ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("where,words", TOOL_COMMANDS, ids=[w.split(": ")[0] for w, _ in TOOL_COMMANDS])
def test_tools_command_parses(where, words, monkeypatch):
    """``python tools/train.py ...`` through the wrapper's own parser, and what it hands to ``solov2`` through
    ``solov2``'s: the wrapper's ``solov2_main`` is replaced by one that only parses."""
    tool = load_tool(words[1])
    handed = []
    monkeypatch.setattr(tool, "solov2_main", lambda argv, **kwargs: handed.append(argv) or 0)
    monkeypatch.setattr(sys, "argv", words[1:])
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            assert tool.main() == 0
    except SystemExit:
        pytest.fail(f"{where}\n  does not parse: {stderr.getvalue().strip().splitlines()[-1]}")
    parse_or_fail(build_parser(), handed[0], where + f"\n  (as solov2 {' '.join(handed[0])})")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def cli_sections() -> dict[str, str]:
    """``{sub-command: its section of docs/cli.md}`` (sections start with ``## solov2 NAME``)."""
    parts = re.split(r"^## solov2 (\S+)\s*$", (ROOT / "docs" / "cli.md").read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_flag_is_in_the_command_line_reference(name):
    section = cli_sections().get(name)
    assert section is not None, f"docs/cli.md has no section '## solov2 {name}'"
    flags = [flag for action in subcommands()[name]._actions if action.help != argparse.SUPPRESS
             for flag in action.option_strings if flag not in ("-h", "--help")]
    missing = [flag for flag in flags if not re.search(re.escape(flag) + r"(?![\w-])", section)]
    assert not missing, f"docs/cli.md, solov2 {name}: flags not documented: {missing}"


def without_code(text: str) -> str:
    """Markdown without fenced blocks and inline code, where ``[x](y)`` is not a link."""
    text = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(without_code(path.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")]


@pytest.mark.parametrize("path", LINKED, ids=[str(p.relative_to(ROOT)) for p in LINKED])
def test_relative_links_point_at_files(path):
    missing = [t for t in relative_links(path) if not (path.parent / t.split("#")[0]).exists()]
    assert not missing, f"{path.relative_to(ROOT)}: links to missing files: {missing}"


def test_link_check_sees_links():
    assert "docs/deployment.md" in relative_links(README)
    assert "docs/demo_prediction.png" in relative_links(README)


def test_file_paths_named_in_the_code_exist():
    """docs/... and benchmarks/... paths in the package, tools and tests name files that exist."""
    pattern = re.compile(r"\b((?:docs|benchmarks)/[\w./-]*\w\.(?:md|py|sh|png))")
    missing = []
    for source in [*ROOT.joinpath("solov2").rglob("*.py"), *ROOT.joinpath("tools").glob("*.py"),
                   *ROOT.joinpath("tests").glob("*.py")]:
        for name in pattern.findall(source.read_text()):
            if not (ROOT / name).exists():
                missing.append(f"{source.relative_to(ROOT)}: {name}")
    assert not missing, "\n".join(missing)


def test_readme_is_a_short_guide():
    text = README.read_text()
    assert len(README.read_bytes()) <= README_LIMIT, f"README.md is {len(README.read_bytes())} bytes"
    words = sorted({m.group(0).lower() for m in INTERNAL_WORDS.finditer(text)})
    assert not words, f"README.md uses internal words: {words}"


def test_mkdocs_build_strict(tmp_path):
    """The site builds with --strict: a broken link or anchor, or a page left out of the nav, fails it.
    mkdocs is in the dev extra (and the docs extra), so a missing mkdocs is a failure, not a skip."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is not installed: pip install -e '.[dev]' (or '.[docs]')")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "deployment" / "index.html").exists()


def test_every_environment_variable_is_documented():
    """Every ``SOLOV2_*`` variable the package reads is in the inference page's table."""
    read = set()
    for source in ROOT.joinpath("solov2").rglob("*.py"):
        read |= set(re.findall(r"environ(?:\.get)?[(\[]\s*[\"'](SOLOV2_\w+)", source.read_text()))
    assert {"SOLOV2_DEBUG", "SOLOV2_PRECISION"} <= read  # the search finds them
    page = (ROOT / "docs" / "inference.md").read_text()
    missing = sorted(name for name in read if f"`{name}`" not in page)
    assert not missing, f"docs/inference.md does not document {missing}"


def test_every_model_and_data_key_is_in_the_configuration_reference():
    """Every keyword argument of the classes a config's ``type`` names (and of the transform and test_cfg) is in
    docs/configuration.md, so a new config key cannot go undocumented."""
    import inspect

    from solov2.data import DATASETS, _dataset_class
    from solov2.models import COMPONENTS
    from solov2.models.transform import ImageTransform
    from solov2.postprocess import TestConfig
    classes = [*COMPONENTS.values(), ImageTransform, TestConfig, *(_dataset_class(name) for name in DATASETS)]
    page = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted({f"{cls.__name__}.{name}" for cls in classes
                      for name, param in inspect.signature(cls.__init__).parameters.items()
                      if name not in ("self", "rng") and param.kind is not param.VAR_KEYWORD
                      and f"`{name}`" not in page})
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_the_cityscapes_command_is_shown():
    command = "python tools/train.py ./configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py --gpus 2"
    for page in (README, ROOT / "docs" / "cityscapes.md"):
        assert command in page.read_text(), f"{page.relative_to(ROOT)} lost the Cityscapes training command"
