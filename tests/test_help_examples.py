"""Every example in every command's --help runs as written (issue 19).

The examples are read from the rendered help, as a user sees it, so the test cannot drift from what
is shown. A help text has up to three kinds of example block, told apart by the line before them:

  "Examples ...:"              run, in order, from a workspace laid out as `make demo` leaves a fresh
                               clone: data/ and recipes/ of this repository and demo-out/ as the
                               Makefile's demo target writes it (run once per module)
  "Then, from another shell:"  curl lines, sent to the server the `rmscore serve` example before them
                               started (on a free port instead of the one written: the only change)
  "With a Hub model ...:"      need a download: checked by the command's own parser, their local inputs
                               must exist (or be written by an earlier example) and they must name a
                               Hub model

Each command's examples run in a fresh copy of that workspace, twice, so an example that fails on a
rerun or needs another command's output fails here. The default run takes each command's examples
up to its own first line (a fast representative); the slow test runs them all.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import re
import runpy
import shlex
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import typer
from typer.testing import CliRunner

from rmscore.cli import app
from serving import wait_for

REPO = Path(__file__).resolve().parent.parent
GROUP = typer.main.get_command(app)
COMMANDS = list(GROUP.commands)
RUN, THEN, HUB = "Examples", "Then, from another shell:", "With a Hub model"
HUB_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")
FILE_SUFFIXES = (".jsonl", ".json", ".gz", ".parquet", ".csv", ".tsv", ".gguf")
LOCAL_FOLDERS = ("data", "recipes", "demo-out", "scored", "rmscore-eval")  # "demo-out/x" is a path, not a Hub name
runner = CliRunner()


@dataclass
class Example:
    command: str  # whose --help shows it
    kind: str  # RUN, THEN or HUB
    heading: str
    line: str
    args: list[str] = field(init=False)

    def __post_init__(self):
        self.args = shlex.split(self.line)

    def where(self) -> str:
        return f"`rmscore {self.command} --help`, block {self.heading!r}, example:\n    {self.line}"


def help_text(name: str, width: int = 80) -> str:
    result = runner.invoke(app, [name, "--help"], terminal_width=width)
    assert result.exit_code == 0, result.output
    return result.output


def parse_examples(name: str, text: str) -> list[Example]:
    """Example lines are the help's lines indented deeper than its prose, before the first option
    section; each belongs to the paragraph above it (a heading ending in ':', possibly wrapped)."""
    examples, paragraph, heading = [], [], None
    for raw in text.split("\n\n", 1)[1].splitlines():  # after the Usage line
        if raw and not raw.startswith(" "):  # "Arguments:", "Options:": the description is over
            break
        indent = len(raw) - len(raw.lstrip())
        if not raw.strip():
            if paragraph:
                heading, paragraph = " ".join(paragraph), []
            continue
        if indent <= 2:
            paragraph.append(raw.strip())
            continue
        assert heading and heading.endswith(":"), f"`rmscore {name} --help`: example {raw.strip()!r} has no heading"
        examples.append(Example(name, block_kind(name, heading), heading, raw.strip()))
    return examples


def block_kind(name: str, heading: str) -> str:
    for kind in (RUN, THEN, HUB):
        if heading.startswith(kind):
            return kind
    raise AssertionError(f"`rmscore {name} --help`: unknown example block {heading!r}; headings start with "
                         f"{RUN!r} (run by this test), {THEN!r} (curl) or {HUB!r} (needs a download)")


def examples_of(name: str) -> list[Example]:
    return parse_examples(name, help_text(name))


def first_own(examples: list[Example]) -> list[Example]:
    """The runnable examples up to the first that runs the command itself, and the curl lines after it."""
    runnable = [e for e in examples if e.kind != HUB]
    own = [i for i, e in enumerate(runnable) if e.args[:2] == ["rmscore", e.command]]
    assert own, f"`rmscore {examples[0].command if examples else '?'} --help`: no runnable example runs the command"
    own = own[0]
    end = own + 1
    while end < len(runnable) and runnable[end].kind == THEN:
        end += 1
    return runnable[:end]


# --- the workspace: what a fresh clone holds after `make demo` ---------------------------------

def link_repo(root: Path) -> None:
    for name in ("data", "recipes"):
        (root / name).symlink_to(REPO / name, target_is_directory=True)


@pytest.fixture(scope="module")
def after_make_demo(made_demo):
    return made_demo[0] / "demo-out"


@pytest.fixture
def workspace(after_make_demo, tmp_path, monkeypatch):
    link_repo(tmp_path)
    shutil.copytree(after_make_demo, tmp_path / "demo-out", symlinks=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- running examples ----------------------------------------------------------------------------

def fail(example: Example, attempt: int, why: str, output: str = ""):
    tail = "\n".join(output.strip().splitlines()[-25:])
    pytest.fail(f"{example.where()}\nfailed on run {attempt} of 2: {why}\n{tail}", pytrace=False)


def run_rmscore(example: Example, attempt: int) -> None:
    result = runner.invoke(app, example.args[1:], env={"RMSCORE_DEBUG": ""})
    if result.exit_code != 0:
        fail(example, attempt, f"exit code {result.exit_code}", result.output)


def run_python(example: Example, attempt: int, monkeypatch) -> None:
    """`python SCRIPT ARGS` in this process (a second interpreter would import torch again)."""
    script = example.args[1]
    if not Path(script).is_file():
        fail(example, attempt, f"{script} does not exist")
    monkeypatch.setattr(sys, "argv", example.args[1:])
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            fail(example, attempt, f"exit code {exc.code}", out.getvalue())


class Server:
    """`rmscore serve ARGS` run by the CLI in a thread, bound to a free port instead of the one asked
    for; everything else (option parsing, config, model load, routes) is the real thing."""

    def __init__(self, example: Example, attempt: int):
        from rmscore.serve import server as module

        self.example, self.attempt, self.asked, self.servers, self.result = example, attempt, None, [], None
        self.patches = pytest.MonkeyPatch()  # undone on stop: the next example gets the real functions
        bind, build = module.bind, module.build

        def free_port(host, port):
            self.asked, self.sock = (host, port), bind("127.0.0.1", 0)
            return self.sock

        def keep(*args, **kwargs):
            self.servers.append(build(*args, **kwargs))
            return self.servers[-1]

        self.patches.setattr(module, "bind", free_port)
        self.patches.setattr(module, "build", keep)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        try:
            wait_for(self._ready, 60, f"{example.line!r} to be ready")
        except BaseException:
            self.stop(check=False)
            raise

    def _run(self):
        self.result = runner.invoke(app, self.example.args[1:], env={"RMSCORE_DEBUG": ""})

    def _ready(self) -> bool:
        if self.result is not None:
            fail(self.example, self.attempt, f"exit code {self.result.exit_code} before serving", self.result.output)
        if not self.servers:
            return False
        service = self.servers[0].service
        if service.load_error is not None:
            fail(self.example, self.attempt, f"the model did not load: {service.load_error}")
        return self.get("/health")[0] == 200

    def request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.sock.getsockname()[1], timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode()
        except OSError:
            return 0, ""
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, str]:
        return self.request("GET", path, None, {})

    def stop(self, check: bool = True) -> None:
        if self.servers:
            self.servers[0].should_exit = True
        self.thread.join(30)
        self.patches.undo()
        assert not self.thread.is_alive(), f"{self.example.line!r} did not stop"
        if check and self.result.exit_code != 0:
            fail(self.example, self.attempt, f"exit code {self.result.exit_code} on stopping", self.result.output)


def run_curl(example: Example, attempt: int, server: Server | None) -> None:
    """What curl would send (a -d body goes as application/x-www-form-urlencoded, as curl sends it,
    unless a -H names another Content-Type, before or after it),
    to the server the serve example started, after checking the URL names that server."""
    if server is None:
        fail(example, attempt, "no `rmscore serve` example before it started a server")
    url, body, headers, words = None, None, {}, iter(example.args[1:])
    for word in words:
        if word in ("-s", "--silent"):
            continue
        if word in ("-d", "--data"):
            body = next(words).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif word in ("-H", "--header"):
            key, _, value = next(words).partition(":")
            headers[key.strip().title()] = value.strip()  # one spelling, so -H overrides -d's default
        elif word.startswith("-"):
            fail(example, attempt, f"this test does not know curl's {word}: teach run_curl")
        else:
            url = urlsplit(word if "://" in word else f"http://{word}")
    host, port = server.asked
    if url is None or url.hostname not in ("localhost", "127.0.0.1") or url.port != port:
        fail(example, attempt, f"the URL is not the server the example before it started ({host}:{port})")
    status, text = server.request("POST" if body is not None else "GET", url.path, body, headers)
    if status != 200:
        fail(example, attempt, f"HTTP {status}", text)


def run_examples(examples: list[Example], monkeypatch) -> None:
    for attempt in (1, 2):
        server = None
        try:
            for example in examples:
                program = example.args[0]
                if program != "curl" and server is not None:
                    server, running = None, server
                    running.stop()
                if program == "rmscore" and example.args[1:2] == ["serve"]:
                    server = Server(example, attempt)
                elif program == "rmscore":
                    run_rmscore(example, attempt)
                elif program == "python":
                    run_python(example, attempt, monkeypatch)
                elif program == "curl":
                    run_curl(example, attempt, server)
                else:
                    fail(example, attempt, f"this test does not know how to run {program!r}")
        except BaseException:
            if server is not None:
                server.stop(check=False)
            raise
        if server is not None:
            server.stop()


# --- the tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_runnable_examples_that_do_not_wrap(name):
    examples = examples_of(name)
    runnable = [e for e in examples if e.kind == RUN]
    assert runnable, f"`rmscore {name} --help` shows no {RUN!r} block that runs on the shipped data"
    assert examples[0].kind == RUN, f"`rmscore {name} --help`: the first example must be runnable offline"
    assert any(e.args[:2] == ["rmscore", name] for e in runnable), \
        f"`rmscore {name} --help`: no runnable example runs `rmscore {name}`"
    # A wrapped example cannot be pasted: the lines must be the same at any terminal width.
    narrow = parse_examples(name, help_text(name, width=50))
    assert [e.line for e in narrow] == [e.line for e in examples], f"`rmscore {name} --help` wraps an example"


@pytest.mark.parametrize("name", COMMANDS)
def test_examples_needing_a_download_parse_and_name_real_inputs(name):
    examples = examples_of(name)
    written: set[str] = set()
    hub_models = {}
    for example in examples:
        if example.kind == HUB:
            if example.args[0] == "python":
                assert (REPO / example.args[1]).is_file(), example.where()
            else:
                assert example.args[0] == "rmscore", f"{example.where()}\nonly rmscore and python lines here"
                params = parse_only(example)
                for value in inputs_of(example, params):
                    assert is_hub_name(value) or (REPO / value).exists() or value.rstrip("/") in written, \
                        f"{example.where()}\n{value!r} does not exist, is not written by an earlier example " \
                        "and is not a Hub name"
                model = params.get("model")
                if model and is_hub_name(model):
                    hub_models[example.heading] = model
        written.update(output_of(example))
    for heading in {e.heading for e in examples if e.kind == HUB}:
        assert heading in hub_models, f"`rmscore {name} --help`: block {heading!r} uses no Hub model (-m owner/name)"


def parse_only(example: Example) -> dict:
    command = GROUP.commands.get(example.args[1])
    assert command is not None, f"{example.where()}\nno command {example.args[1]!r}"
    try:
        with command.make_context(example.args[1], example.args[2:]) as ctx:
            return ctx.params
    except Exception as exc:  # Typer's own (vendored) Click usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else repr(exc)
        pytest.fail(f"{example.where()}\ndoes not parse: {message}", pytrace=False)


def inputs_of(example: Example, params: dict) -> list[str]:
    command = GROUP.commands[example.args[1]]
    values = []
    for param in command.params:
        if param.param_type_name == "argument" and params.get(param.name) is not None:
            value = params[param.name]
            values += list(value) if isinstance(value, (list, tuple)) else [value]
    return [str(v) for v in values]


def output_of(example: Example) -> list[str]:
    args = example.args
    return [args[i + 1].rstrip("/") for i, word in enumerate(args[:-1]) if word in ("-o", "--output")]


def is_hub_name(value: str) -> bool:
    return (bool(HUB_NAME.match(value)) and not value.endswith(FILE_SUFFIXES)
            and value.split("/")[0] not in LOCAL_FOLDERS and not (REPO / value).exists())


@pytest.mark.parametrize("name", COMMANDS)
def test_first_examples_run_as_written(name, workspace, monkeypatch):
    run_examples(first_own(examples_of(name)), monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_all_examples_run_as_written(name, workspace, monkeypatch):
    run_examples([e for e in examples_of(name) if e.kind != HUB], monkeypatch)
