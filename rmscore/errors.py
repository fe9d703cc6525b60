"""User-facing errors. Only the CLI turns them into one-line messages; library code just raises."""


class RmscoreError(Exception):
    """An error the user can fix. `hint` says how; the CLI prints both on one or two lines."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class InputError(RmscoreError):
    """The input cannot be read, or its columns do not match any known layout."""


class ModelError(RmscoreError):
    """The model cannot be loaded or is not a reward model of a known family."""


class ConfigError(RmscoreError):
    """Options that contradict each other or are out of range."""


class ServerError(RmscoreError):
    """A running `rmscore serve` could not be reached in time, or refused the request."""


class ResumeConflict(RmscoreError):
    """The output folder holds results made with different settings."""


class OutputError(RmscoreError):
    """The output cannot be written (a full disk, a read-only folder). Finished parts are intact."""


class ShardBusy(RmscoreError):
    """Another process is writing this shard of the output folder."""


class Interrupted(RmscoreError):
    """SIGTERM/SIGUSR1 stopped the run after every finished row was saved. Not a failure: the
    CLI exits with `exit_code` (EX_TEMPFAIL), which batch scripts take as "requeue me"."""

    exit_code = 75

    def __init__(self, signal_name: str):
        super().__init__(f"stopped by {signal_name}", "rerun the same command to continue where it stopped")
        self.signal_name = signal_name


class RowError(Exception):
    """One row cannot be scored. Never reaches the user as an exception: the row is written with
    this status code and detail, counted, and the run goes on."""

    def __init__(self, status: str, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
