"""`rmscore build-sft`: scored Parquet in; the best completions as one SFT Parquet file, its report,
and optionally a random baseline of the same size.

Flow, as build-pairs (pairs/build.py): open and check the scored files -> (--select overall: find
the cutoff of the best fraction in a few streaming passes, pairs/cutoff.py) -> bucket the rows by
prompt (pairs/buckets.py) -> for each prompt, select_sft (pairs/sft.py) -> rows in the chosen format
-> one file, in the input order of prompts, best first within a prompt. The baseline is a second
pass over the buckets that draws as many completions per prompt (or overall) as were kept.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from rmscore import __version__
from rmscore.config import SftConfig
from rmscore.errors import ConfigError
from rmscore.pairs import buckets as scored_io
from rmscore.pairs import cutoff
from rmscore.pairs.build import ORDER, ORDER_KEY, check_output, progress, report_path, write_sorted
from rmscore.pairs.formats import SFT_SCHEMAS, sft_row
from rmscore.pairs.sft import SftReport, baseline, select_sft


@dataclass
class SftSummary:
    output: str
    report_path: str
    report: dict  # what the .report.json holds
    baseline: str | None
    wall_s: float


def run_build_sft(cfg: SftConfig, log=print) -> SftSummary:
    start = time.perf_counter()
    out = check_output(cfg.output, cfg.overwrite, example="sft.parquet")
    base = check_output(cfg.baseline_out, cfg.overwrite, "--baseline-out", "sft-random.parquet") \
        if cfg.baseline_out else None
    if base is not None and base.resolve() == out.resolve():
        raise ConfigError("--baseline-out is the same file as -o", "name the baseline file differently")
    scored = scored_io.open_scored(cfg.inputs, cfg.score_column, cfg.allow_mixed_models, cfg.allow_partial,
                                   command="build-sft")
    if {p.resolve() for p in (out, base) if p} & set(scored.files):
        raise ConfigError("an output file is one of the inputs", "write the SFT data to another file")
    buckets = scored_io.bucket_count(scored, cfg.buckets)
    log(f"reading {len(scored.files)} scored file(s), {scored.nbytes / 2**20:,.1f} MiB of needed columns, "
        f"in {buckets} bucket(s); select {_what(cfg)}, format {cfg.format}, score column {cfg.score_column}")
    top = _overall_cutoff(scored, cfg.top_fraction, None) if cfg.select == "overall" else None
    report = SftReport()
    metadata = _metadata(cfg, scored)

    def pick(prompt_id, completions):
        choice = select_sft(completions, cfg, top)
        report.add(choice)
        return choice.kept

    _write(scored, buckets, out, cfg.format, metadata, pick, report.add_without_prompt, log)
    content = report.as_dict() | {"output": str(out), "inputs": [str(f) for f in scored.files],
                                  "settings": _settings(cfg), "scoring": scored.metadata}
    if base is not None:
        content["baseline"] = {"output": str(base), "rows": _write_baseline(scored, buckets, base, cfg, top,
                                                                           report.rows, metadata, log)}
    path = report_path(out)
    path.write_text(json.dumps(content, indent=2, default=str))
    return SftSummary(str(out), str(path), content, str(base) if base else None, time.perf_counter() - start)


def _what(cfg: SftConfig) -> str:
    what = f"the best {cfg.k} per prompt" if cfg.select == "per-prompt" else f"the best {cfg.top_fraction:g} overall"
    return what + (f", score >= {cfg.min_score:g}" if cfg.min_score is not None else "")


def _write_baseline(scored, buckets: int, base: Path, cfg: SftConfig, top, total: int, metadata: dict, log) -> int:
    """The random selection: per prompt as many as were kept there, or overall the same total."""
    draw = _overall_cutoff(scored, None, (cfg.seed, total)) if cfg.select == "overall" and total else None
    rows = 0

    def pick(prompt_id, completions):
        nonlocal rows
        choice = select_sft(completions, cfg, top)
        if cfg.select == "overall":
            picked = baseline(prompt_id, choice, cfg.seed, draw) if draw else []
        else:
            picked = baseline(prompt_id, choice, cfg.seed)
        rows += len(picked)
        return picked

    _write(scored, buckets, base, cfg.format, metadata | {"baseline": True}, pick, lambda statuses: None, log)
    return rows


def _write(scored, buckets: int, out: Path, fmt: str, metadata: dict, pick, without_prompt, log) -> None:
    schema = SFT_SCHEMAS[fmt].with_metadata({"rmscore": json.dumps(metadata)})
    score_column, rows = scored.score_column, 0

    def table(bucket: pa.Table) -> pa.Table:
        nonlocal rows
        found = []  # (prompt_id, the prompt's first key, rank, completion)
        bucket = scored_io.sort_by_prompt(bucket)
        for prompt_id, completions in scored_io.iter_groups(bucket, score_column):
            if prompt_id is None:
                without_prompt([c.status for c in completions])
                continue
            first = min(c.key for c in completions)
            found += [(prompt_id, first, rank, c) for rank, c in enumerate(pick(prompt_id, completions))]
        prompts = bucket.column("prompt").take(pa.array([f[3].row for f in found], pa.int64())).to_pylist()
        rows += len(found)
        records = [sft_row(fmt, prompt_id, prompt, c) | {"_first_input": first[0], "_first_completion": first[1],
                                                         "_rank": rank}
                   for (prompt_id, first, rank, c), prompt in zip(found, prompts)]
        full = pa.schema(list(SFT_SCHEMAS[fmt]) + [pa.field(n, t) for n, t in ORDER])
        return pa.Table.from_pylist(records, schema=full).sort_by([(k, "ascending") for k in ORDER_KEY])

    with tempfile.TemporaryDirectory(prefix=".tmp-build-sft-", dir=out.parent) as tmp:
        tables = (table(t) for t in scored_io.iter_buckets(scored, buckets, Path(tmp) / "spill"))
        write_sorted(progress(tables, buckets, lambda: f"{rows:,} rows", log), out, schema, Path(tmp), buckets)


def _overall_cutoff(scored, fraction: float | None, draw: tuple[int, int] | None) -> cutoff.Cutoff | None:
    """The cutoff of the best `fraction` of usable rows by score, or (draw = (seed, n)) of n rows
    drawn at random; None when no row is usable."""
    column = scored.score_column
    usable = scored_io.usable_rows(scored)
    projection = {"s": scored.projection[column], "i": pc.field("input_index"), "c": pc.field("completion_index")}
    data = scored_io.dataset(scored)

    def passes():
        for batch in scored_io.scan(data, projection, usable):  # bounded read-ahead: see scan
            i, c = (batch.column(n).to_numpy(zero_copy_only=False) for n in ("i", "c"))
            first = cutoff.draw(draw[0], i, c) if draw else cutoff.descending(batch.column("s").to_numpy(False))
            yield [first, cutoff.unsigned(i), cutoff.unsigned(c)]

    # Not data.count_rows(filter=...): its scanner reads ahead without bound to evaluate the filter
    # (it reads the completion column): 1M rows held ~200 MiB of Arrow memory, 565 MiB peak.
    total = sum(batch.num_rows for batch in scored_io.scan(data, {"i": pc.field("input_index")}, usable))
    n = draw[1] if draw else cutoff.kept_count(fraction, total)
    if not n:
        return None
    return cutoff.Cutoff(cutoff.nth(passes, n - 1), draw[0] if draw else None)


def _settings(cfg: SftConfig) -> dict:
    settings = asdict(cfg) | {"per_prompt": cfg.k if cfg.select == "per-prompt" else None}
    for name in ("inputs", "output", "overwrite", "buckets", "allow_mixed_models", "allow_partial", "baseline_out"):
        settings.pop(name)
    return settings


def _metadata(cfg: SftConfig, scored: scored_io.ScoredInput) -> dict:
    return {
        "kind": "sft",
        "rmscore_version": __version__,
        "model": scored.metadata.get("model"),
        "build_sft": _settings(cfg),
        "scoring": scored.metadata,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
