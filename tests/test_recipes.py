"""The recipes are runnable as written: directives present, every rmscore command they show parses
with the real CLI, the shell is valid, and the sbatch script really requeues on SIGUSR1."""

import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.main import get_command

from rmscore.cli import app
from rmscore.distributed.signals import REQUEUE_EXIT

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SHELL_RECIPES = ["slurm_array.sbatch", "single_node_multi_gpu.sh"]
STOP = {"&", "&&", "|", "||", ";"}


def code_lines(text: str) -> list[str]:
    """Shell lines, continuations joined. Comment lines indented past '#  ' are examples: kept."""
    lines = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line.startswith("#"):
            if not re.match(r"#\s{2,}\S", line):
                continue  # prose
            line = line.lstrip("#").strip()
        if line:
            lines.append(line)
    return lines


def bash_blocks(markdown: str) -> str:
    return "\n".join(re.findall(r"```(?:bash|sh)\n(.*?)```", markdown, re.S))


def rmscore_commands(lines: list[str]) -> list[list[str]]:
    """The arguments after each `rmscore` (run directly, or as `-m rmscore` by python/torchrun)."""
    found = []
    for line in lines:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, token in enumerate(tokens):
            if token == "rmscore" and (i == 0 or tokens[i - 1] == "-m"):
                args = []
                for arg in tokens[i + 1:]:
                    if arg in STOP or arg.startswith((">", "2>")):
                        break
                    args.append(arg)
                found.append(args)
    return found


def check_parses(args: list[str]) -> bool:
    """Parse with the real CLI (options, types, choices), without running the command."""
    group = get_command(app)
    name, rest = args[0], args[1:]
    assert name in group.commands, f"`rmscore {name}` is not a command: {' '.join(args)}"
    group.commands[name].make_context(name, rest)
    return True


def commands_of(recipe: str) -> list[list[str]]:
    text = (RECIPES / recipe).read_text()
    return rmscore_commands(code_lines(bash_blocks(text) if recipe.endswith(".md") else text))


@pytest.mark.parametrize("recipe", [*SHELL_RECIPES, "simpo_preference_data.md"])
def test_every_rmscore_command_parses(recipe):
    commands = commands_of(recipe)
    checked = [args[0] for args in commands if check_parses(args)]
    assert "score" in checked, commands
    assert recipe == "slurm_array.sbatch" or {"merge", "build-pairs"} & {a[0] for a in commands}


@pytest.mark.parametrize("recipe", SHELL_RECIPES)
def test_shell_is_valid(recipe):
    assert subprocess.run(["bash", "-n", str(RECIPES / recipe)], capture_output=True).returncode == 0


def test_markdown_python_compiles():
    text = (RECIPES / "simpo_preference_data.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2  # the vLLM sampling script and the TRL training script
    for block in blocks:
        compile(block, "recipe", "exec")
    assert 'loss_type="simpo"' in text and "--rule max-min" in text and "--model-type armorm" in text


def sbatch_directives(text: str) -> dict[str, str]:
    return dict(
        (m.group(1), m.group(2) or "") for m in re.finditer(r"^#SBATCH\s+(--[\w-]+)(?:[= ](\S+))?", text, re.M)
    )


def test_sbatch_directives():
    text = (RECIPES / "slurm_array.sbatch").read_text()
    directives = sbatch_directives(text)
    for needed in ("--array", "--gres", "--time", "--requeue", "--signal", "--cpus-per-task", "--mem", "--output"):
        assert needed in directives, needed
    assert directives["--gres"] == "gpu:1"
    assert re.fullmatch(r"B:USR1@\d+", directives["--signal"])
    assert directives["--open-mode"] == "append"  # a requeued task appends to its log
    body = text[text.index("set -uo pipefail"):]
    assert "#SBATCH" not in body  # sbatch stops reading directives at the first command
    assert f'"$rc" -eq {REQUEUE_EXIT}' in body and 'scontrol requeue "$SLURM_JOB_ID"' in body
    assert "--overwrite" not in " ".join(sum(commands_of("slurm_array.sbatch"), []))


@pytest.fixture
def fake_slurm(tmp_path):
    """`rmscore` and `scontrol` stand-ins that log what they receive."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    (bin_dir / "rmscore").write_text(
        "#!/bin/bash\n"
        f"trap 'echo got-USR1 >> {log}; exit {REQUEUE_EXIT}' USR1\n"
        f"trap 'echo got-TERM >> {log}; exit {REQUEUE_EXIT}' TERM\n"
        f'echo "rmscore $*" >> {log}\n'
        "while true; do sleep 0.05; done\n"
    )
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "scontrol $*" >> {log}\n')
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)
    return bin_dir, log


@pytest.mark.parametrize("sig, requeued", [(signal.SIGUSR1, True), (signal.SIGTERM, False)])
def test_sbatch_script_forwards_the_signal_and_requeues(fake_slurm, tmp_path, sig, requeued):
    bin_dir, log = fake_slurm
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "3",
           "SLURM_ARRAY_TASK_COUNT": "16", "INPUT": "in.jsonl", "OUT": str(tmp_path / "out")}
    proc = subprocess.Popen(["bash", str(RECIPES / "slurm_array.sbatch")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    while not (log.exists() and "rmscore score" in log.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=30)
    seen = log.read_text()
    assert proc.returncode == REQUEUE_EXIT, output
    assert f"got-{sig.name.removeprefix('SIG')}" in seen
    assert ("scontrol requeue 4242" in seen) == requeued, seen
