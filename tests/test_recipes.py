"""The recipes are runnable as written: directives present, every rmscore command they show parses
with the real CLI, the shell is valid, and the sbatch script really requeues on SIGUSR1."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
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
    assert f"rc={REQUEUE_EXIT}" in body and 'scontrol requeue "$SLURM_JOB_ID"' in body
    assert "--overwrite" not in " ".join(sum(commands_of("slurm_array.sbatch"), []))


@pytest.fixture
def fake_slurm(tmp_path):
    """`rmscore` and `scontrol` stand-ins that log what they receive."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    (bin_dir / "rmscore").write_text(
        "#!/bin/bash\n"
        'me="${RANK:+[$RANK]}"\n'  # [rank] under the torchrun stand-in
        f"trap 'echo got-USR1$me >> {log}; exit {REQUEUE_EXIT}' USR1\n"
        f"trap 'echo got-TERM$me >> {log}; exit {REQUEUE_EXIT}' TERM\n"
        f'echo "rmscore$me $*" >> {log}\n'
        "while true; do sleep 0.05; done\n"
    )
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "scontrol $*" >> {log}\n')
    # Like torchrun: workers are its children; no SIGUSR1 handler (the signal kills it, exit 138);
    # SIGTERM is passed on; a worker that exits non-zero makes it exit 1.
    (bin_dir / "torchrun").write_text(
        "#!/bin/bash\n"
        "n=1\n"
        "while [[ $1 == --* ]]; do case $1 in --nproc-per-node) n=$2; shift 2;; *) shift;; esac; done\n"
        "shift 2  # -m rmscore\n"
        'for ((i = 0; i < n; i++)); do RANK=$i rmscore "$@" & done\n'
        "trap 'kill -TERM $(jobs -p) 2>/dev/null' TERM\n"
        "rc=0; for p in $(jobs -p); do wait $p || rc=1; done; exit $rc\n"
    )
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


@pytest.mark.parametrize("sig, requeued", [(signal.SIGUSR1, True), (signal.SIGTERM, False)])
def test_sbatch_script_with_several_gpus_signals_every_torchrun_worker(fake_slurm, tmp_path, sig, requeued):
    bin_dir, log = fake_slurm
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "3",
           "SLURM_ARRAY_TASK_COUNT": "16", "INPUT": "in.jsonl", "OUT": str(tmp_path / "out"), "GPUS": "2"}
    proc = subprocess.Popen(["bash", str(RECIPES / "slurm_array.sbatch")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    while not all(f"rmscore[{rank}] score" in (log.read_text() if log.exists() else "") for rank in (0, 1)) \
            and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=30)
    seen = log.read_text()
    name = sig.name.removeprefix("SIG")
    assert proc.returncode == REQUEUE_EXIT, output + seen
    assert f"got-{name}[0]" in seen and f"got-{name}[1]" in seen, seen
    assert ("scontrol requeue 4242" in seen) == requeued, seen


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def signal_mask(pid: int, field: str) -> int:
    """A signal mask of /proc/PID/status: SigCgt (caught), ShdPnd/SigPnd (pending)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    return 0


def has(mask: int, sig: signal.Signals) -> bool:
    return bool(mask >> (sig - 1) & 1)


def poll(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if found := condition():
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def stop_torchrun_workers_with(sig: signal.Signals, script: subprocess.Popen, workers: int, log: Path) -> list[int]:
    """Signal the batch script while its torchrun workers are inside rmscore's stop handling.

    The workers are frozen (SIGSTOP) as soon as both catch SIGUSR1, the script's trap forwards
    `sig` to them (its pkill, logged by a stand-in, has returned), and then they resume: whatever
    the machine's load, every worker gets the signal while it works, never before its handler is
    installed nor after its shard is done."""
    launcher = poll(lambda: children(script.pid), 60, "torchrun")[0]

    def ready() -> list[int] | None:
        found = children(launcher)
        caught = len(found) == workers and all(has(signal_mask(p, "SigCgt"), signal.SIGUSR1) for p in found)
        return found if caught else None

    found = poll(ready, 120, "rmscore's signal handlers")
    for pid in found:
        os.kill(pid, signal.SIGSTOP)
    script.send_signal(sig)
    poll(lambda: f"pkill -{sig.name.removeprefix('SIG')} " in log.read_text() if log.exists() else False, 30,
         "the script's trap")
    for pid in found:
        os.kill(pid, signal.SIGCONT)
    return found


def kill_tree(pid: int) -> None:
    """End a test's process tree (torchrun puts its workers in sessions of their own)."""
    for child in children(pid):
        kill_tree(child)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def recipe_env(tmp_path, bin_dir, model, input_path, **extra) -> dict:
    from scored import subprocess_env

    venv = Path(sys.executable).parent  # torchrun and rmscore
    return subprocess_env(PATH=f"{bin_dir}:{venv}:/usr/bin:/bin", SLURM_JOB_ID="4242", SLURM_ARRAY_TASK_ID="0",
                          SLURM_ARRAY_TASK_COUNT="1", INPUT=str(input_path), OUT=str(tmp_path / "out"),
                          MODEL=str(model), GPUS="2", **extra)


@pytest.fixture
def fake_scontrol(tmp_path):
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "scontrol $*" >> {log}\n')
    (bin_dir / "pkill").write_text(f'#!/bin/bash\n/usr/bin/pkill "$@"; rc=$?\necho "pkill $* -> $rc" >> {log}\n'
                                   "exit $rc\n")
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)
    return bin_dir, log


def test_sbatch_with_torchrun_workers_saves_and_requeues_on_usr1(fake_scontrol, tiny_models, tmp_path):
    """The recipe as SLURM runs it with --gres=gpu:2 (GPUS=2): real torchrun, real rmscore workers."""
    from tiny import completions_rows

    bin_dir, log = fake_scontrol
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in completions_rows(16, 3, seed=3)))
    script = subprocess.Popen(["bash", str(RECIPES / "slurm_array.sbatch")], cwd=tmp_path,
                              env=recipe_env(tmp_path, bin_dir, tiny_models["llama"], data),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        stop_torchrun_workers_with(signal.SIGUSR1, script, 2, log)
        output, _ = script.communicate(timeout=120)
    finally:
        if script.poll() is None:  # a failed assertion above: leave nothing running
            kill_tree(script.pid)
    assert script.returncode == REQUEUE_EXIT, output[-3000:]
    assert "scontrol requeue 4242" in log.read_text() and "pkill -USR1 -P" in log.read_text()
    assert output.count("Stopped: stopped by SIGUSR1 after saving") == 2, output[-3000:]  # each worker saved
    meta = tmp_path / "out" / ".rmscore"
    assert sorted(p.name for p in meta.glob("manifest-*")) == ["manifest-00000-of-00002.json",
                                                               "manifest-00001-of-00002.json"]
    assert not list(meta.glob("done-*"))


@pytest.mark.slow
def test_sbatch_with_torchrun_workers_stops_mid_run_and_the_requeued_job_finishes(fake_scontrol, tiny_models,
                                                                                   tmp_path):
    """USR1 after each worker wrote its first window: the window is kept, the job requeues, and the
    requeued run (SLURM_RESTART_COUNT=1) scores the rest, every row exactly once."""
    from tiny import completions_rows

    from rmscore.store.merge import merge

    bin_dir, log = fake_scontrol
    data = tmp_path / "in.jsonl"
    rows = completions_rows(5000, 6, seed=5, long_tail=False)  # ~15,000 rows per worker: 8,192 + ~6,800
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = recipe_env(tmp_path, bin_dir, tiny_models["llama"], data)
    out = tmp_path / "out"
    script = subprocess.Popen(["bash", str(RECIPES / "slurm_array.sbatch")], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        poll(lambda: len(list(out.glob(".tmp-part-*"))) == 2, 600, "each worker's first window")
        stop_torchrun_workers_with(signal.SIGUSR1, script, 2, log)
        output, _ = script.communicate(timeout=300)
    finally:
        if script.poll() is None:
            kill_tree(script.pid)
    assert script.returncode == REQUEUE_EXIT and "scontrol requeue 4242" in log.read_text(), output[-3000:]
    saved = [int(n.replace(",", "")) for n in re.findall(r"after saving ([\d,]+) scored rows", output)]
    assert len(saved) == 2 and all(n >= 8192 for n in saved), output[-3000:]  # the first windows survived
    again = subprocess.run(["bash", str(RECIPES / "slurm_array.sbatch")], cwd=tmp_path, timeout=900, text=True,
                           env={**env, "SLURM_RESTART_COUNT": "1"}, capture_output=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"{sum(saved):,} completions scored by an earlier run were skipped" in again.stdout + again.stderr
    summary = merge(out, tmp_path / "merged.parquet")
    assert summary.rows == 5000 * 6 and summary.duplicates == 0
