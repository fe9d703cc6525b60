"""Resuming a shard: which rows are done, under which settings, and where new parts go.

Each shard keeps `OUTPUT/.rmscore/manifest-{shard}-of-{count}.json`: the settings that change the
numbers, and one record per finished part (file, rows, first and last row key, status counts).
A shard writes its rows in input order, so each part holds a contiguous run of the shard's rows
and "done" is a handful of key ranges, one per part, whatever the number of rows. The one
exception is the part a stop or a failure leaves mid-window (marked "exact" in the manifest and in
the file's metadata): it holds the rows whose batches finished, a set of keys read back one by one.

The part files are the truth and the manifest follows them: it is written before the first part,
rewritten after each part is renamed into place, and on start reconciled with the folder (a part
renamed just before a SIGKILL is read back; a deleted part's rows are scored again).
"""

from __future__ import annotations

import json
import os
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rmscore.config import ScoreConfig
from rmscore.distributed import completion, layout
from rmscore.errors import ConfigError, ResumeConflict
from rmscore.read import promote
from rmscore.score.batching import INVARIANT_SCHEME
from rmscore.score.records import Sample
from rmscore.store import conform, input_identity, lock
from rmscore.store.output import EVAL_KEY, EXACT_KEYS, META_DIR
from rmscore.store.writers import PART_GLOB, existing_parts, output_error, part_seq

GENRM_SETTINGS = ("judge_url", "judge_model", "judge_mode", "verdict_pattern", "judge_temperature", "judge_seed",
                  "judge_max_tokens")
KEY_COLUMNS = ["input_index", "completion_index", "prompt_id", "status"]
INPUT_CONTRACT = 2  # raise when the rules that turn an input row into text change
# How a differing setting is named in the refusal message, when not simply --key-with-dashes.
NAMES = {
    "input": "input", "columns": "column options (--prompt-col, ...)", "shard_count": "shard count "
    "(--shard, SLURM array size or torchrun workers)", "model_type": "model type", "template_hash": "chat template",
    "dtype": "dtype", "model_digest": "model files (config, tokenizer or weights)",
    "input_contract": "input reading rules (None: an rmscore that read JSON inside strings)",
    "batch_invariant": "--batch-invariant (None: off)",
}


def requested_settings(cfg: ScoreConfig, shard_count: int) -> dict:
    """The options that change which rows exist or what their scores are, as the user gave them."""
    i, m, b = cfg.input, cfg.model, cfg.batch
    return {
        "input": _where(i.path), "split": i.split, "config": i.config_name, "columns": asdict(i.columns),
        "keep_columns": list(i.keep_columns), "model": model_name(m.path), "model_type": m.model_type,
        "revision": m.revision, "dtype": m.dtype, "chat_template": m.chat_template, "system_prompt": m.system_prompt,
        "bos": m.bos, "step_separator": m.step_separator, "aggregate": m.aggregate, "max_length": b.max_length,
        "step_tokens": m.step_tokens, "judge_template": m.judge_template, "score_tokens": m.score_tokens,
        "gguf_file": m.gguf_file,
        # A generative judge's replies depend on who answers and how it is asked (only genrm runs
        # record them, so folders written before they existed still resume).
        **({k: getattr(m, k) for k in GENRM_SETTINGS} if m.model_type == "genrm" else {}),
        "on_overflow": b.on_overflow, "shard_count": shard_count,
        "json_columns": sorted(i.json_columns) or None,
        # How a row's text and shape are read from the input (issue 24: a string is text, each row's
        # shape its own). Folders scored under the earlier rules, which read JSON inside strings and
        # took every row's shape from the first, have none: resuming them would mix two readings.
        "input_contract": INPUT_CONTRACT,
        "batch_invariant": invariant_scheme(b),
    }


def invariant_scheme(batch_cfg) -> str | None:
    """What --batch-invariant records: its padding rule's name (another rule gives other bits), or
    None without it, so folders written before the option existed resume as they are."""
    return INVARIANT_SCHEME if batch_cfg.batch_invariant else None


def resolved_settings(provenance: dict) -> dict:
    """What `auto` turned into and what the checkpoint says (dtype, family, template hash, ...):
    the same command can resolve differently on another machine or after the checkpoint changed."""
    volatile = ("created", "rmscore_version", "input", "model", "model_path", "revision", "on_overflow",
                "system_prompt")
    return json.loads(json.dumps({k: v for k, v in provenance.items() if k not in volatile}, default=str))


def model_name(path: str) -> str | None:
    """-m as the settings compare it: a Hub name as given; nothing for a checkpoint on disk, which
    is compared by its content digest once loaded (resolved settings: a copy of it is the same
    model, another checkpoint at the same path is not). Its path is for display only."""
    return None if os.path.exists(path) else path


def _where(path: str) -> str:
    # The same file named from another working directory is the same input.
    return os.path.abspath(path) if os.path.exists(path) else path


def differences(before: dict, now: dict) -> list[str]:
    return [
        f"{NAMES.get(k, '--' + k.replace('_', '-'))} was {before.get(k)!r}, now {now.get(k)!r}"
        for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)
    ]


def conflict(out_dir: Path, diffs: list[str]) -> ResumeConflict:
    shown = "; ".join(diffs[:3]) + (f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else "")
    return ResumeConflict(
        f"{out_dir} holds rows scored with other settings: {shown}",
        "rerun with the same settings to resume, pass --overwrite to start again, or choose another -o",
    )


def manifest_path(out_dir: Path, stem: str) -> Path:
    return out_dir / META_DIR / f"manifest-{stem}.json"


def read_manifests(out_dir: Path) -> dict[str, dict]:
    """stem -> manifest of every shard that has one."""
    found = sorted((out_dir / META_DIR).glob("manifest-*.json")) if (out_dir / META_DIR).is_dir() else []
    return {p.name[len("manifest-"):-len(".json")]: json.loads(p.read_text()) for p in found}


def part_record(path: Path) -> dict:
    """What the manifest keeps about a finished part, read back from the file itself."""
    table = pq.read_table(path, columns=KEY_COLUMNS)
    ii, cc, ids = table["input_index"], table["completion_index"], table["prompt_id"]
    statuses = {str(s["values"]): s["counts"] for s in table["status"].value_counts().to_pylist()}
    exact = {"exact": True} if EXACT_KEYS in (table.schema.metadata or {}) else {}
    return {"file": path.name, "rows": table.num_rows, "first": [ii[0].as_py(), cc[0].as_py()],
            "last": [ii[-1].as_py(), cc[-1].as_py()], "first_id": ids[0].as_py(), "last_id": ids[-1].as_py(),
            "statuses": statuses, **exact}


def part_keys(path: Path) -> set[tuple[int, int]]:
    table = pq.read_table(path, columns=["input_index", "completion_index"])
    return set(zip(table["input_index"].to_pylist(), table["completion_index"].to_pylist()))


def clear(out_dir: Path, stem: str, count: int) -> None:
    """--overwrite: remove this shard's files, leftovers of another shard count (layout.check has
    made sure they hold no rows) and parts no rmscore run made. Sibling shards of the same count are
    left alone: they may be running right now with the same --overwrite, and may remove the same
    leftovers first."""
    def ours(name: str, unnamed: bool) -> bool:
        found = completion.STEM.search(name)
        return unnamed if found is None else found.group(0) == stem or int(found.group(2)) != count

    for path in [*out_dir.glob(PART_GLOB), *out_dir.glob(".tmp-part-*")]:
        if ours(path.name, unnamed=True):
            path.unlink(missing_ok=True)
    meta = out_dir / META_DIR
    if (meta / EVAL_KEY).is_file():  # an eval cache whose rows are being replaced is never reused
        (meta / EVAL_KEY).write_text(json.dumps({"state": "overwritten"}))
    for path in meta.iterdir() if meta.is_dir() else []:
        if path.is_file() and ours(path.name, unnamed=False):
            path.unlink(missing_ok=True)


def check_settings(out_dir: Path, manifests: dict[str, dict], key: str, now: dict) -> None:
    """Refuse when a shard already holds rows made otherwise (a shard with no rows binds nothing)."""
    for manifest in manifests.values():
        if manifest["parts"] and manifest.get(key) is not None and (diffs := differences(manifest[key], now)):
            raise conflict(out_dir, diffs)


def check_foreign(out_dir: Path, manifests: dict[str, dict]) -> None:
    for path in out_dir.glob(PART_GLOB):
        if not any(f"part-{stem}-" in path.name for stem in manifests):
            raise ResumeConflict(
                f"{out_dir} holds {path.name}, which no rmscore manifest records",
                "pass --overwrite to replace it, or choose another -o",
            )


def shard_for(cfg: ScoreConfig, dist, log):
    """The shard this process writes: `dist`, or the shard a one-task array resubmission stands for
    in this folder (rmscore/distributed/layout.py). Read before the shard's lock is taken."""
    out_dir = output_dir(cfg)
    overwrite = cfg.output.overwrite and not dist.restarts
    return layout.place(dist, out_dir, read_manifests(out_dir) if out_dir.is_dir() else {}, overwrite, log)


def output_dir(cfg: ScoreConfig) -> Path:
    """-o as given, made absolute: no library may expand a literal "~" in it (pyarrow does)."""
    return Path(os.path.abspath(cfg.output.path))


def open_output(cfg: ScoreConfig, dist, log) -> "ShardState":
    """Check the output folder before the model loads, clear it only on --overwrite, and return
    this shard's resume state (its manifest, with the shard layout, written before any part is).
    `dist` is the shard `shard_for` placed. The layout is checked and claimed under the folder's
    lock, so of two runs with different shard counts started at once, the second refuses."""
    out_dir = output_dir(cfg)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output {out_dir} exists and is a file", "-o names a folder of Parquet parts")
    overwrite = cfg.output.overwrite
    if overwrite and dist.restarts:
        log(f"SLURM requeued this job ({dist.restarts} restarts): --overwrite ignored, resuming")
        overwrite = False
    with lock.FolderLock(out_dir, dist):
        return _claim(cfg, dist, out_dir, overwrite, log)


def _claim(cfg: ScoreConfig, dist, out_dir: Path, overwrite: bool, log) -> "ShardState":
    _check_live_layouts(out_dir, dist)
    layout.check(dist, out_dir, overwrite)
    if overwrite:
        clear(out_dir, dist.stem, dist.shard_count)
    settings = requested_settings(cfg, dist.shard_count)
    manifests = read_manifests(out_dir)
    if not overwrite:  # after --overwrite, sibling shards may hold the old run until they restart too
        check_settings(out_dir, manifests, "settings", settings)
        check_foreign(out_dir, manifests)
    (out_dir / META_DIR).mkdir(parents=True, exist_ok=True)
    mine = manifests.get(dist.stem, {})
    state = ShardState(out_dir, dist.stem, {**mine, "settings": settings, "layout": layout.record(dist),
                                            "parts": mine.get("parts", [])}, log)
    state.check_peers = not overwrite
    if state.lost:
        completion.undo(out_dir, dist.stem)  # the marker promised rows that are gone
    input_identity.check_limit(state.manifest["parts"], cfg.input.limit, out_dir)  # before a marker is undone
    state.complete = completion.is_done(out_dir, dist.stem, cfg.input.limit)
    if state.complete:  # a finished run over a damaged input says so again, and scores nothing
        state.damage = json.loads(completion.done_path(out_dir, dist.stem).read_text()).get("damage")
    state.save()
    state.dist = dist
    return state


def _check_live_layouts(out_dir: Path, dist) -> None:
    """Refuse while a run of another shard count is writing the folder, saved rows or not."""
    others = [path.stem for path in (out_dir / META_DIR / "locks").glob("*-of-*.lock")
              if (found := completion.STEM.search(path.stem)) and int(found.group(2)) != dist.shard_count]
    busy = lock.live_writers(out_dir, dist, sorted(others))
    if busy:
        raise ResumeConflict(f"{out_dir} is being written by a run of another shard count: {busy[0]}; this run: "
                             f"shard {dist.shard_index}/{dist.shard_count}",
                             "wait for that run to finish (then resume with its shard count), stop it, or choose "
                             "another -o")


class ShardState:
    """This shard's finished parts as key ranges; decides what still needs scoring."""

    def __init__(self, out_dir: Path, stem: str, manifest: dict, log):
        self.out_dir, self.stem, self.manifest, self.log = out_dir, stem, manifest, log
        self.complete = False
        self.damage: str | None = None  # where the input broke off, when a finished run found it damaged
        self.guard = lambda: None  # raises when this process no longer holds the shard (rmscore/store/lock.py)
        self.check_peers = True  # compare resolved settings with sibling shards too
        self.dist = None  # the shard this process writes (set by open_output)
        self._exact: dict[str, set] = {}  # exact-key parts: file -> keys
        self.skipped = 0  # rows found already done in this run
        self._prev: tuple | None = None  # key of the last row written by this run
        for tmp in out_dir.glob(f".tmp-part-{stem}-*"):
            tmp.unlink(missing_ok=True)  # a part cut short by SIGKILL: its rows were never recorded as done
        self._reconcile()
        self.digests = input_identity.PartDigests(self.manifest["parts"])

    def _reconcile(self) -> None:
        on_disk = {p.name: p for p in existing_parts(self.out_dir, self.stem)}
        listed = {rec["file"]: rec for rec in self.manifest["parts"] if rec["file"] in on_disk}
        self.lost = sorted({rec["file"] for rec in self.manifest["parts"]} - set(on_disk))
        for name in self.lost:
            self.log(f"part {name} is missing: its rows will be scored again")
        for name in sorted(set(on_disk) - set(listed)):
            listed[name] = part_record(on_disk[name])  # renamed into place just before a crash
        self.manifest["parts"] = sorted(listed.values(), key=lambda rec: rec["first"])
        self._index()
        self.next_seq = max((part_seq(p) + 1 for p in on_disk.values()), default=0)

    def _index(self) -> None:
        parts = self.ranged = [rec for rec in self.manifest["parts"] if not rec.get("exact")]
        self.firsts = [tuple(rec["first"]) for rec in parts]
        self.lasts = [tuple(rec["last"]) for rec in parts]
        every = self.manifest["parts"]
        self.anchors = {tuple(rec[end]): rec[f"{end}_id"] for rec in every for end in ("first", "last")}
        for rec in self.manifest["parts"]:
            if rec.get("exact") and rec["file"] not in self._exact:
                self._exact[rec["file"]] = part_keys(self.out_dir / rec["file"])
        self.exact_owner = {key: rec for rec in self.manifest["parts"] if rec.get("exact")
                            for key in self._exact[rec["file"]]}

    def part_at(self, key: tuple) -> dict | None:
        """The finished part holding `key`, if any: an exact part by its keys, the others by range."""
        if key in self.exact_owner:
            return self.exact_owner[key]
        at = bisect_right(self.firsts, key) - 1
        return self.ranged[at] if at >= 0 and key <= self.lasts[at] else None

    def is_done(self, key: tuple) -> bool:
        return self.part_at(key) is not None

    def check_input(self, path: str, samples) -> None:
        """Before the model loads: refuse an input that changed under the finished parts; a shard
        whose input gained rows is not finished any more (rmscore/store/input_identity.py)."""
        if input_identity.recheck(self.manifest, path, samples, self.log):
            completion.undo(self.out_dir, self.stem)
            self.complete = False
        self.save()

    def pending(self, samples: Iterator[Sample]) -> Iterator[Sample]:
        """The samples not scored yet. Rows of finished parts are checked against the input: a
        different row there means the input changed, and resuming would mix data."""
        for sample in samples:
            part = self.part_at(sample.key)
            if part is None:
                self.digests.scoring(sample)
                yield sample
                continue
            self.skipped += 1
            self.digests.skipped(sample, part)
            if self.anchors.get(sample.key, sample.prompt_id) != sample.prompt_id:
                raise ResumeConflict(
                    f"input row {sample.input_index} is not the row scored there before: the input changed",
                    "resume only with the same input in the same order; pass --overwrite to start again",
                )
        self.digests.finish(self.manifest["parts"])

    def split(self, keys: list[tuple]) -> list[int]:
        """Where rows about to be written must start a new part: wherever a finished part's range
        lies between two consecutive rows (its rows were skipped), so parts never overlap."""
        cuts = []
        for i, key in enumerate(keys):
            if self._prev is not None:
                at = bisect_right(self.firsts, self._prev)
                if at < len(self.firsts) and self.firsts[at] < key:
                    cuts.append(i)
            self._prev = key
        return cuts

    @property
    def schema(self) -> pa.Schema | None:
        """The promoted schema of this shard's earlier parts, so kept columns keep their widest types."""
        parts = self.manifest["parts"]
        return promote.unify([pq.read_schema(self.out_dir / rec["file"]) for rec in parts]) if parts else None

    @property
    def rows(self) -> int:
        return sum(rec["rows"] for rec in self.manifest["parts"])

    def check_resolved(self, provenance: dict) -> None:
        resolved = resolved_settings(provenance)
        manifests = read_manifests(self.out_dir) if self.check_peers else {self.stem: self.manifest}
        check_settings(self.out_dir, manifests, "resolved", resolved)
        self.manifest["resolved"] = resolved
        self.save()

    def note_run(self, record: dict) -> None:
        """Keep how this run computed (e.g. {"ray": {job id, actors, ...}}): appended under each
        key, one entry per run, so the manifest lists every Ray job that wrote parts of the shard.
        Not a setting: runs that compute differently resume each other."""
        for key, value in record.items():
            self.manifest.setdefault(key, []).append(value)
        if record:
            self.save()

    def record(self, path: Path) -> None:
        """A part was just renamed into place: its rows are done."""
        rec = part_record(path)
        self.digests.seal(rec)
        self.manifest["parts"] = sorted([*self.manifest["parts"], rec], key=lambda rec: rec["first"])
        self._index()
        self.save()

    def save(self) -> None:
        path = manifest_path(self.out_dir, self.stem)
        tmp = path.with_name(f".tmp-{path.name}")
        try:
            tmp.write_text(json.dumps(self.manifest, indent=1))
            os.replace(tmp, path)  # a reader never sees half a manifest
        except OSError as exc:  # the parts are the truth: the next start reads back any it lacks
            raise output_error(self.out_dir, exc) from exc

    def finish(self, limit: int | None, damage: str | None = None) -> None:
        """Every part of the folder to one schema (rmscore/store/conform.py), then the marker
        `rmscore merge` and the readers look for, written last. Only kept columns change type from
        part to part: without them there is nothing to conform, and no part footer is read."""
        rewritten = 0
        if self.manifest["settings"]["keep_columns"]:
            with lock.FolderLock(self.out_dir, self.dist):
                rewritten = conform.conform(self.out_dir)
        if rewritten:
            self.log(f"rewrote {rewritten} part(s) so that every part of {self.out_dir} has one schema")
        completion.mark_done(self.out_dir, self.stem, {"rows": self.rows, "parts": len(self.manifest["parts"]),
                                                       "limit": limit, "damage": damage})
