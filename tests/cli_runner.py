"""Running rmscore's CLI in process, as the tests do: one-line errors (no traceback) unless a test
sets RMSCORE_DEBUG itself."""

from typer.testing import CliRunner

from rmscore.cli import app


def invoke(*args, env: dict | None = None):
    """The command's result, whatever its exit status; env adds to (or overrides) RMSCORE_DEBUG=''."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"RMSCORE_DEBUG": "", **(env or {})})


def run(*args, env: dict | None = None):
    """The command's result; fails the test with its output unless it exited 0."""
    result = invoke(*args, env=env)
    assert result.exit_code == 0, result.output
    return result
