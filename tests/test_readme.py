"""The README runs as written: its shell blocks top to bottom, and the commands `make demo` runs.

A newcomer follows the README in order, from the repository root, after `make demo`. So the test
runs every ```bash block in order in one working folder that holds the repository's data/ and
recipes/, each line as written. A block that cannot run offline on a CPU (a Hub model, a GPU, a
server, a cluster) says so in a `<!-- not run: why -->` comment right above it; every other block
runs, so a new block is tested unless someone writes down why not. `rmscore ...` lines run
in-process (the console script is this same typer app; one interpreter saves the few seconds of
imports per line), `python ...` lines in a subprocess; anything else fails the test. A figure
quoted in a line's comment (`# pairwise accuracy: 60.2%`) must appear in that line's output.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rmscore.cli import app

REPO = Path(__file__).resolve().parent.parent
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")
FIGURE = re.compile(r"\d+(?:\.\d+)?%")


def shell_blocks(text: str) -> list[tuple[int, list[str], str | None]]:
    """(line number, lines, reason it is not run or None) for each ```bash block."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            above = [ln for ln in lines[max(0, start - 4):start - 1] if ln.strip()]
            match = NOT_RUN.search(above[-1]) if above else None
            blocks.append((start, body, match.group(1) if match else None))
        i += 1
    return blocks


def commands(body: list[str]) -> list[tuple[str, str]]:
    """(line as written, its comment) per command; backslash continuations joined."""
    out, pending = [], ""
    for line in body:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        code = " ".join(shlex.split(line, comments=True))
        if code:
            out.append((code, line.partition(" #")[2]))
    return out


def run_line(argv: list[str], cwd: Path) -> tuple[int, str]:
    if argv[0] == "rmscore":
        old = Path.cwd()
        os.chdir(cwd)
        try:
            result = CliRunner().invoke(app, argv[1:], env={"RMSCORE_DEBUG": ""})
        finally:
            os.chdir(old)
        return result.exit_code, result.output
    if argv[0] == "python":
        done = subprocess.run([sys.executable, *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout + done.stderr
    raise AssertionError(f"README line {shlex.join(argv)!r}: only rmscore and python lines can run here; "
                         "mark the block <!-- not run: why --> if it cannot")


def test_blocks_are_parsed_and_every_skipped_one_says_why():
    blocks = shell_blocks((REPO / "README.md").read_text())
    assert len(blocks) >= 8
    runnable = [b for b in blocks if b[2] is None]
    assert runnable, "no README block runs"
    assert all(reason for _, _, reason in blocks if reason is not None)
    tour = [code for _, body, _ in runnable for code, _ in commands(body)]
    # the tour covers every command a newcomer meets (serve runs in tests/test_serve.py)
    for command in ("models", "score", "inspect", "build-pairs", "eval", "best-of-n", "merge", "doctor"):
        assert any(code.startswith(f"rmscore {command} ") or code == f"rmscore {command}" for code in tour), command


def test_readme_shell_blocks_run_top_to_bottom(tmp_path):
    for name in ("data", "recipes"):
        (tmp_path / name).symlink_to(REPO / name)
    for start, body, reason in shell_blocks((REPO / "README.md").read_text()):
        if reason is not None:
            continue
        for code, comment in commands(body):
            status, output = run_line(shlex.split(code), tmp_path)
            assert status == 0, f"README.md block at line {start}: `{code}` exited {status}:\n{output[-3000:]}"
            for figure in FIGURE.findall(comment):
                assert figure in output, f"README.md line `{code}` says {figure}; the run printed:\n{output[-2000:]}"


def test_make_demo_commands_run_and_hide_the_red_team_texts(made_demo):
    _, outputs = made_demo
    assert [args[0] for args, _ in outputs] == ["score", "build-pairs", "inspect", "inspect"]
    for args, output in outputs:
        if args[0] == "inspect":
            # no prompt or completion text reaches the screen: the demo data is red-team material
            shown = [t for t in demo_texts() if t in output]
            assert not shown, f"make demo: `rmscore {shlex.join(args)}` printed demo texts, e.g. {shown[0]!r}"


def demo_texts() -> list[str]:
    """The first 30 characters of each demo completion (inspect shows texts cut to two lines)."""
    rows = [json.loads(line) for line in (REPO / "data/demo/hh_rlhf_demo.jsonl").read_text().splitlines()]
    return [c[:30] for row in rows for c in row["completions"] if len(c) >= 30]


def test_code_layout_names_every_package_and_top_level_module():
    text = (REPO / "README.md").read_text()
    layout = text[text.index("## Code layout"):]
    package = REPO / "rmscore"
    names = [p.name + "/" for p in package.iterdir() if p.is_dir() and not p.name.startswith("__")]
    names += [p.name for p in package.glob("*.py") if not p.name.startswith("__")]
    missing = [n for n in sorted(names) if not re.search(rf"(?<![\w/]){re.escape(n)}", layout)]
    assert not missing, f"README's code layout does not mention {missing}"


def test_every_link_inside_the_readme_lands_on_a_heading():
    text = (REPO / "README.md").read_text()

    def anchor(heading: str) -> str:  # GitHub's rule: lower case, punctuation dropped, spaces to -
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    headings = {anchor(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}
    broken = sorted(set(re.findall(r"\]\(#([^)]+)\)", text)) - headings)
    assert not broken, f"README links to missing headings: {broken}"
