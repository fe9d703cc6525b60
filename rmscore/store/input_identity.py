"""Is the input still the one a shard's finished parts were scored from?

Regenerating completions into the same file is the normal on-policy loop, so a rerun must never
mix rows of two inputs, nor call a shard finished when rows were added. Two records in the shard's
manifest answer it cheaply, even for a 10M-row input:

- A stamp of the input (`stamp`): every file's resolved path, size, mtime and a digest of its
  first 64 KiB; a stat and one small read per file. While it is unchanged, a finished shard stays
  finished without reading a row.
- A digest of the rows of each finished part (`PartDigests`), made from the samples as they are
  scored: every field that reaches the output. A resume streams the input anyway to find the rows
  left to score; the rows it skips are hashed on the way and checked part by part, at no extra read.

When the stamp changed, `verify` reads the input once before the model loads, up to the first new
row past the finished parts: any finished row that differs, moved or vanished refuses the run
with one line naming the change; if none did (rows appended, or a file rewritten with the same
rows), the new rows are scored and the log says so.
"""

from __future__ import annotations

import hashlib
import json
import marshal
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from rmscore.errors import ResumeConflict
from rmscore.score.records import Sample
from rmscore.store.fingerprint import data_files

HEAD_BYTES = 1 << 16
FIX = "score the new input into another -o, or pass --overwrite to score it from the start"


def stamp(path: str) -> dict | None:
    """The input's files as they are now; None for a Hub dataset (no files to stat)."""
    files = []
    for f in data_files(path):
        info = f.stat()
        with open(f, "rb") as handle:
            head = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()[:16]
        files.append([str(f), info.st_size, info.st_mtime_ns, head])
    return {"files": files} if files else None


def change(before: dict | None, now: dict | None) -> str | None:
    """What changed between two stamps, in words; None if nothing did or it cannot be told."""
    if before is None or now is None or before == now:
        return None
    old, new = ({f[0]: f for f in s["files"]} for s in (before, now))
    words = []
    for path in sorted(set(old) | set(new)):
        a, b, name = old.get(path), new.get(path), Path(path).name
        if a is None or b is None:
            words.append(f"{name} was {'added' if a is None else 'removed'}")
        elif a[1] != b[1]:
            words.append(f"{name} went from {a[1]:,} to {b[1]:,} bytes")
        elif a != b:
            words.append(f"{name} was rewritten")
    return ", ".join(words[:3]) + (f" (+{len(words) - 3} more)" if len(words) > 3 else "")


def sample_digest(sample: Sample) -> bytes:
    """Every field of the sample (key, ids, prompt, completion, steps, kept columns)."""
    # siblings repeats the row's other samples (each digested itself): left out, so digests stored
    # before it existed still match.
    fields = [getattr(sample, name) for name in Sample.__slots__ if name != "siblings"]
    try:
        # marshal format 2 writes no back-references, so equal values give equal bytes; 3x
        # cheaper than JSON, which matters on a resume that skips millions of rows.
        data = marshal.dumps(fields, 2)
    except ValueError:  # a kept value of a type marshal does not know (a date, a decimal)
        data = json.dumps(fields, ensure_ascii=False, sort_keys=True, default=repr).encode("utf-8")
    return hashlib.blake2b(data, digest_size=16).digest()


class PartDigests:
    """Digests of finished parts' rows: sealed into a part's record when it is written, checked
    while a later run skips those rows. Parts without a digest (written by an older rmscore, or
    read back after a SIGKILL) are only checked by the prompt ids at their ends."""

    def __init__(self, parts: list[dict], what_changed: str | None = None):
        self.expected = {rec["file"] for rec in parts if rec.get("digest")}  # finished before this run
        self.change = what_changed
        self.running: dict[str, hashlib.blake2b] = {}
        self.checked: set[str] = set()
        self.written: deque = deque()  # (key, digest) of the rows handed out for scoring, in order

    def scoring(self, sample: Sample) -> None:
        self.written.append((sample.key, sample_digest(sample)))

    def seal(self, rec: dict) -> None:
        """`rec` (a part just renamed into place) gets the digest of the rows it holds."""
        first, last, digest, rows = tuple(rec["first"]), tuple(rec["last"]), hashlib.blake2b(digest_size=16), 0
        while self.written and self.written[0][0] <= last:
            key, row = self.written.popleft()
            if key >= first:
                digest.update(row)
                rows += 1
        if rows == rec["rows"]:  # else some rows were not seen here: leave the part unverifiable
            rec["digest"] = digest.hexdigest()

    def skipped(self, sample: Sample, rec: dict) -> None:
        """A row the input still has inside finished part `rec`: it must be the row scored there."""
        if rec["file"] not in self.expected:
            return
        digest = self.running.setdefault(rec["file"], hashlib.blake2b(digest_size=16))
        digest.update(sample_digest(sample))
        if sample.key == tuple(rec["last"]):
            if digest.hexdigest() != rec["digest"]:
                raise self._conflict(f"input rows {rec['first'][0]}-{rec['last'][0]} are not the rows scored into "
                                     f"{rec['file']}")
            self.checked.add(rec["file"])

    def finish(self, parts: list[dict]) -> None:
        """The input ended: every finished part must have been seen whole."""
        for rec in parts:
            if rec["file"] in self.expected and rec["file"] not in self.checked:
                raise self._conflict(f"the input no longer holds all of rows {rec['first'][0]}-{rec['last'][0]}, "
                                     f"scored into {rec['file']}")

    def _conflict(self, what: str) -> ResumeConflict:
        since = f" ({self.change})" if self.change else ""
        return ResumeConflict(f"{what}: the input changed since they were scored{since}", FIX)


def recheck(manifest: dict, path: str, samples, log) -> bool:
    """Compare the input with the stamp in a shard's manifest, then record the new stamp. Returns
    whether rows are left to score although the shard may have finished; raises ResumeConflict if
    the finished rows are not the input's any more. `samples()` streams the shard's samples."""
    now = stamp(path)
    changed = change(manifest.get("input_stamp"), now)
    new_rows = False
    if changed:
        parts = manifest["parts"]
        new_rows = verify(parts, samples(), changed) if parts else True
        if new_rows:
            log(f"the input changed since the last run ({changed}); the {sum(rec['rows'] for rec in parts):,} "
                "rows scored before are unchanged: scoring the new rows")
        else:
            log(f"the input changed since the last run ({changed}) but holds the same rows")
    manifest["input_stamp"] = now  # only once the finished rows are known to still be the input's
    return new_rows


def verify(parts: list[dict], samples: Iterator[Sample], what_changed: str) -> bool:
    """Check every finished part against the input (one read, up to the first new row after them).
    Returns whether rows are left to score; raises ResumeConflict naming the change otherwise."""
    unverifiable = [rec["file"] for rec in parts if not rec.get("digest")]
    if unverifiable:
        raise ResumeConflict(f"the input changed ({what_changed}), and {unverifiable[0]} records no row digest to "
                             "check it against (written by an older rmscore or read back after a crash)", FIX)
    check = PartDigests(parts, what_changed)
    firsts, end = [tuple(rec["first"]) for rec in parts], max(tuple(rec["last"]) for rec in parts)
    new_rows = False
    for sample in samples:
        at = bisect_right(firsts, sample.key) - 1
        if at >= 0 and sample.key <= tuple(parts[at]["last"]):
            check.skipped(sample, parts[at])
        else:
            new_rows = True
            if sample.key > end:
                break  # every finished part is behind: the rest of the input is new
    check.finish(parts)
    return new_rows


def check_limit(parts: list[dict], limit: int | None, out_dir: Path) -> None:
    """A lower --limit than the finished rows reach would leave more rows than it asks for."""
    reach = max((rec["last"][0] for rec in parts), default=-1)
    if limit is not None and reach >= limit:
        raise ResumeConflict(
            f"{out_dir} already holds scores for input rows up to {reach}, more than --limit {limit} allows",
            f"drop --limit (or raise it to at least {reach + 1}) to use them, pass --overwrite to score only the "
            f"first {limit} rows, or choose another -o",
        )
