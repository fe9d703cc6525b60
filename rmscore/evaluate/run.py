"""Evaluations built on scored output: best-of-N curves, and reward-model accuracy (`rmscore eval`).

`rmscore eval` scores through the normal path (rmscore.score.run.run_score) into a cache folder that
is an ordinary `rmscore score` output, then computes metrics from it. The folder is reused while the
data, model and scoring settings stay the same (recorded in CACHE/.rmscore/eval-key.json), so
computing another metric, or a breakdown by another column, never scores again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from rmscore.config import BestOfNConfig, EvalConfig, InputConfig, ShardConfig
from rmscore.errors import ConfigError, InputError
from rmscore.evaluate import bestofn, metrics
from rmscore.evaluate import cache as eval_cache
from rmscore.evaluate.multiple_choice import McLayout, convert, detect_mc
from rmscore.read.contract import first_shapes, reading_of
from rmscore.read.sources import open_source
from rmscore.store import fingerprint
from rmscore.store.output import META_DIR, read_metadata
from rmscore.store.resume import invariant_scheme
from rmscore.store.scored import read_columns, read_groups


def run_best_of_n(cfg: BestOfNConfig) -> dict:
    groups, skipped = read_groups(cfg.scored, cfg.label_column, cfg.answer_column, cfg.score_column,
                                  cfg.allow_partial)
    curves = bestofn.curves(groups, cfg.ns, cfg.vote_weight, cfg.seed, samples=cfg.samples)
    sizes = [len(g.labels) for g in groups]
    metadata = read_metadata(Path(cfg.scored))
    report = {
        "task": "best-of-n", "scored": cfg.scored, "input": metadata.get("input"), "model": model_name(metadata),
        "label_column": cfg.label_column, "answer_column": cfg.answer_column, "score_column": cfg.score_column,
        "vote_weight": cfg.vote_weight if cfg.answer_column else None,
        "prompts": curves.prompts, "completions": curves.completions,
        "completions_per_prompt": {"min": min(sizes), "max": max(sizes)}, "skipped_rows": dict(skipped),
        "n": curves.ns, "accuracy": curves.accuracy, "stderr": curves.stderr,
        "prompts_with_fewer_than_n": curves.capped, "prompts_sampled": curves.sampled,
    }
    if cfg.output:
        from rmscore.evaluate import plots

        out = Path(cfg.output)
        check_reports(out, "bestofn.json", "bestofn.png", ("best-of-n",))
        out.mkdir(parents=True, exist_ok=True)
        data = Path(str(report["input"] or cfg.scored).rstrip("/")).name
        title = f"Best-of-N: {report['model']} on {data} ({curves.prompts:,} prompts)"
        plot = plots.best_of_n(curves, out / "bestofn.png", title)
        report["files"] = {"json": str(out / "bestofn.json"), "plot": str(plot)}
        write_json(out / "bestofn.json", report)
    return report


def run_eval(cfg: EvalConfig, log=print) -> dict:
    """Score (or reuse cached scores), then compute pairwise or multiple-choice accuracy."""
    source = open_source(cfg.score.input.path, cfg.score.input.split, cfg.score.input.config_name)
    task, mc_layout = detect_task(source, cfg)
    if cfg.subset_column and cfg.subset_column not in source.columns:
        raise InputError(f"--subset-column {cfg.subset_column!r} not found",
                         f"the input has: {', '.join(source.columns)}")
    cache = Path(cfg.score.output.path)
    check_reports(Path(cfg.output), "eval.json", "margins.png", ("pairs", "mc"))
    ensure_scores(cfg, task, mc_layout, source, log)
    cols = read_columns(cache, ["input_index", cfg.score_column], ("completion_index", "side", "status", "labels"))
    cols["score"] = cols.pop(cfg.score_column)  # --score-column: one objective of a multi-objective model
    values, skipped = metrics.multiple_choice(cols) if task == "mc" else metrics.pairs(cols)
    subsets = subset_values(source, cfg.subset_column) if cfg.subset_column else None
    report = {"task": task, "input": cfg.score.input.path, "model": model_name(read_metadata(cache)),
              "scores": str(cache), "score_column": cfg.score_column, "skipped": dict(skipped)}
    report |= metrics.summarise(task, values, subsets)
    return write_eval(report, Path(cfg.output), values if task == "pairs" else None)


def detect_task(source, cfg: EvalConfig) -> tuple[str, McLayout | None]:
    """("mc", layout) or ("pairs", None), from the columns and --task."""
    mc_layout = detect_mc(source.columns, cfg.mc) if cfg.task in ("auto", "mc") else None
    if mc_layout:
        return "mc", mc_layout
    if cfg.task == "mc":
        raise InputError(f"no multiple-choice columns in {source.description}: {', '.join(source.columns)}",
                         "name them with --question-col and --targets-col, or --choices-col and --labels-col")
    i = cfg.score.input
    try:
        pairs = "pairs" in first_shapes(source, reading_of(source, i.columns, json_columns=i.json_columns))
    except InputError:
        pairs = False
    if not pairs:
        raise InputError(f"{source.description} is neither preference pairs nor multiple choice "
                         f"(columns: {', '.join(source.columns)})",
                         "eval needs prompt + chosen + rejected columns (or --chosen-col/--rejected-col), "
                         "or a question with mc1_targets, or choices + labels")
    return "pairs", None


def ensure_scores(cfg: EvalConfig, task: str, mc_layout, source, log) -> None:
    """Reuse the cache when its key matches; otherwise score into it. The folder must be new, empty
    or an eval cache (rmscore/evaluate/cache.py): nothing rmscore did not write is ever removed.

    The key and the converted multiple-choice input live in CACHE/.rmscore/, which readers of the
    folder (pyarrow.dataset, datasets.load_dataset) skip, so the cache stays a plain scored folder.
    """
    cache = Path(cfg.score.output.path)
    key = json.loads(json.dumps(cache_key(cfg, task)))
    stored = _read_json(eval_cache.key_path(cache)) or {}
    same = stored.get("state") == "done" and stored.get("key") == key
    if same and not cfg.rescore and stored.get("contents") == eval_cache.contents(cache):
        log(f"reusing scores in {cache} (same data, model and settings)")
        return
    created = eval_cache.claim(cache)  # refuses a folder holding anything eval did not write
    if stored.get("state") == "overwritten" or (same and not cfg.rescore):
        log(f"scores in {cache} were changed since eval made them: scoring again")
    elif stored.get("key") not in (None, key):
        changed = [name for name in key if stored["key"].get(name) != key[name]]
        log(f"scores in {cache} were made with another {', '.join(changed)}: scoring again")
    try:
        _score_into(cache, cfg, task, mc_layout, source, key, log)
    except BaseException:
        eval_cache.release(cache, created)  # a failed eval leaves no half cache or empty folder
        raise


def _score_into(cache: Path, cfg: EvalConfig, task: str, mc_layout, source, key: dict, log) -> None:
    write_json(eval_cache.key_path(cache), {"state": "scoring", "key": key})
    # One shard holding everything, whatever torchrun/SLURM variables say: metrics need every row.
    score_cfg = replace(cfg.score, output=replace(cfg.score.output, overwrite=False), shard=ShardConfig(0, 1))
    if task == "mc":
        converted = cache / META_DIR / "mc-input.jsonl"
        problems = convert(source, mc_layout, converted, cfg.mc.seed, cfg.score.input.limit)
        for problem, count in problems.items():
            log(f"{count} multiple-choice rows not scored: {problem}")
        score_cfg = replace(score_cfg, input=InputConfig(str(converted), keep_columns=["labels"]))
    from rmscore.score.run import run_score

    summary = run_score(score_cfg, log)
    summary.raise_for_damage()  # an evaluation over part of a broken file must not pass for whole
    log(f"scored {summary.samples:,} completions in {summary.wall_s:.1f}s into {cache}")
    # last: the cache is complete, and holds what `contents` says
    write_json(eval_cache.key_path(cache), {"state": "done", "key": key, "contents": eval_cache.contents(cache)})


def cache_key(cfg: EvalConfig, task: str) -> dict:
    """Everything that changes the scores; nothing that only changes speed or the metric. Files
    enter by resolved path and content (rmscore/store/fingerprint.py), never by the name as typed."""
    s = cfg.score
    model = asdict(s.model) | {"path": fingerprint.model_key(s.model.path, s.model.revision),
                               "chat_template": fingerprint.template_key(s.model.chat_template),
                               # a file: its content, not its name, changes the scores
                               "judge_template": fingerprint.template_key(s.model.judge_template)}
    for speed_only in ("device", "device_map", "attn_implementation"):
        model.pop(speed_only)
    return {
        "task": task, "input": fingerprint.input_key(s.input.path), "split": s.input.split,
        "config": s.input.config_name, "columns": asdict(s.input.columns) if task == "pairs" else asdict(cfg.mc),
        **({"json_columns": sorted(s.input.json_columns)} if s.input.json_columns else {}),
        "limit": s.input.limit, "model": model, "max_length": s.batch.max_length, "on_overflow": s.batch.on_overflow,
        # only when on: caches made before the option existed keep their key
        **({"batch_invariant": invariant_scheme(s.batch)} if s.batch.batch_invariant else {}),
    }


def subset_values(source, column: str) -> dict[int, str]:
    """input_index -> the row's value in `column` (read from the input, so no rescoring is needed)."""
    return {row.index: str((row.data or {}).get(column)) for row in source.rows()}


def check_reports(out: Path, report: str, plot: str, tasks: tuple[str, ...]) -> None:
    """Before any work: the report and plot may replace only what an earlier run of the same
    command wrote there (its report names its plot); a file of those names that rmscore did not
    write is refused, never overwritten."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out} is a file", "-o names a folder for the report and plot")
    old = _read_json(out / report) if (out / report).exists() else None
    ours = isinstance(old, dict) and old.get("task") in tasks and isinstance(old.get("files"), dict)
    plot_ours = ours and Path(str(old["files"].get("plot", ""))).name == plot
    for name, mine in ((report, ours), (plot, plot_ours)):
        if (out / name).exists() and not mine:
            raise ConfigError(f"{out / name} exists and rmscore did not write it", "choose another -o folder")


def write_eval(report: dict, out: Path, margins: dict | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    report["files"] = {"json": str(out / "eval.json")}
    if margins:
        from rmscore.evaluate import plots

        title = (f"{report['model']} on {Path(report['input'].rstrip('/')).name}: "
                 f"{100 * report['accuracy']:.1f}% of {report['pairs']:,} pairs")
        report["files"]["plot"] = str(plots.margins(list(margins.values()), out / "margins.png", title))
    write_json(out / "eval.json", report)
    return report


def model_name(metadata: dict) -> str:
    """The model as the user named it: a Hub name whole, a local folder by its last part."""
    model = metadata.get("model") or "unknown model"
    return Path(model.rstrip("/")).name if Path(model).exists() else model


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
