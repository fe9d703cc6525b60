"""The README and the docs/ pages run as written, and every link between them lands.

A newcomer follows the README in order, from the repository root, after `make demo`, then the pages
in docs/ in the order the README lists them. So the test runs every ```bash block of the README and
then of each page, in that order, in one working folder that holds the repository's data/ and
recipes/, each line as written (a page's examples may use what the README's tour wrote). A block
that cannot run offline on a CPU (a Hub model, a GPU, a server, a cluster) says so in a
`<!-- not run: why -->` comment right above it; every other block runs, so a new block is tested
unless someone writes down why not. `rmscore ...` lines run
in-process (the console script is this same typer app; one interpreter saves the few seconds of
imports per line), `python ...` lines in a subprocess; anything else fails the test. A figure
quoted in a line's comment (`# pairwise accuracy: 60.2%`) must appear in that line's output.

Every relative link of every page (`#anchor`, `docs/x.md#anchor`, `../README.md#a-tour`, an image)
must name a file that exists and, for a markdown file, a heading in it.
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
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    """README.md, then the docs/ pages in the order its Documentation section lists them."""
    readme = REPO / "README.md"
    section = readme.read_text().partition("\n## Documentation\n")[2].partition("\n## ")[0]
    listed = dict.fromkeys(re.findall(r"\]\((docs/[\w.-]+\.md)\)", section))
    return [readme] + [REPO / path for path in listed]


def name(page: Path) -> str:
    return str(page.relative_to(REPO))


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


def test_every_docs_page_is_listed_in_the_readme():
    listed = {name(p) for p in pages()[1:]}
    missing = sorted(name(p) for p in (REPO / "docs").glob("*.md") if name(p) not in listed)
    assert not missing, f"README.md's Documentation section does not list {missing}: no one would find them"


def test_blocks_are_parsed_and_every_skipped_one_says_why():
    blocks = [b for page in pages() for b in shell_blocks(page.read_text())]
    assert len(blocks) >= 8
    runnable = [b for b in blocks if b[2] is None]
    assert runnable, "no block of the README or docs/ runs"
    assert all(reason for _, _, reason in blocks if reason is not None)
    tour = [code for _, body, _ in runnable for code, _ in commands(body)]
    # the tour covers every command a newcomer meets (serve runs in tests/test_serve.py)
    for command in ("models", "score", "inspect", "build-pairs", "eval", "best-of-n", "merge", "doctor"):
        assert any(code.startswith(f"rmscore {command} ") or code == f"rmscore {command}" for code in tour), command


def test_readme_shell_blocks_run_top_to_bottom(tmp_path):
    for name in ("data", "recipes"):
        (tmp_path / name).symlink_to(REPO / name)
    for page in pages():
        for start, body, reason in shell_blocks(page.read_text()):
            if reason is not None:
                continue
            for code, comment in commands(body):
                status, output = run_line(shlex.split(code), tmp_path)
                assert status == 0, f"{name(page)} block at line {start}: `{code}` exited {status}:\n{output[-3000:]}"
                for figure in FIGURE.findall(comment):
                    assert figure in output, f"{name(page)} line `{code}` says {figure}; the run printed:\n{output[-2000:]}"


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
    layout = (REPO / "docs" / "architecture.md").read_text()
    package = REPO / "rmscore"
    names = [p.name + "/" for p in package.iterdir() if p.is_dir() and not p.name.startswith("__")]
    names += [p.name for p in package.glob("*.py") if not p.name.startswith("__")]
    missing = [n for n in sorted(names) if not re.search(rf"(?<![\w/]){re.escape(n)}", layout)]
    assert not missing, f"docs/architecture.md does not mention {missing}"


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to -,
    a repeated heading suffixed -1, -2, ..."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+ (.*)$", FENCE.sub("", text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def links(text: str) -> list[str]:
    """Relative link targets outside code: fenced blocks and `inline code` hold no links."""
    prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))
    return [t for t in LINK.findall(prose) if not re.match(r"[a-z]+:", t)]


def test_every_link_lands_on_a_file_and_a_heading():
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in links(page.read_text()):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.is_relative_to(REPO) or not dest.exists():
                broken.append(f"{name(page)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                broken.append(f"{name(page)}: {target} (no such heading in {name(dest)})")
    assert not broken, "broken links:\n" + "\n".join(broken)
