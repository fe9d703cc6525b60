"""The PNGs of `rmscore inspect` (matplotlib, through the `plot` extra; Agg canvas via plots.figure).

Histograms are drawn from the counts in the report, so a figure shows exactly what inspect.json
holds. A figure drawn from the row sample says so in its title.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rmscore.evaluate.plots import figure
from rmscore.inspect.text import short_model

HINT = "pip install 'rmscore[plot]' for the PNGs (matplotlib)"
NOTHING = {"scored": "no figures: no row has a scored status and a finite score",
           "pairs": "no figures: no pair has a finite margin"}
SCATTER_MAX = 3000  # up to this many points a scatter; more: a hexbin


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def scored_figures(report: dict, length: np.ndarray, score: np.ndarray, out: Path) -> dict[str, Path]:
    """length/score: the sampled scored rows, for the scatter."""
    title = f"{short_model(report['model'])}, column {report['score_column']}"
    files = {"scores": _histogram(report["score"]["histogram"], out / "scores.png", report["score_column"],
                                  "completions", f"Score distribution ({report['scored_rows']:,} rows)\n{title}")}
    files["length_bias"] = _length_scatter(report, length, score, out / "length_bias.png")
    if "steps" in report:
        files["steps"] = _steps(report["steps"], report["sample"], out / "steps.png")
    if "objectives" in report:
        files["objectives"] = _objectives(report["objectives"], report["sample"], out / "objectives.png")
    return files


def pairs_figures(report: dict, out: Path) -> dict[str, Path]:
    n = report["pairs"]
    files = {"margins": _histogram(report["margin"]["histogram"], out / "margins.png", "score(chosen) - score(rejected)",
                                   "pairs", f"Margins of {n:,} pairs\n{short_model(report['model'])}")}
    files["length_ratio"] = _ratio(report, out / "length_ratio.png")
    return files


def _histogram(hist: dict, path: Path, xlabel: str, ylabel: str, title: str, ax=None) -> Path:
    fig = None
    if ax is None:
        fig = figure()
        ax = fig.add_subplot()
    if hist["counts"]:
        ax.stairs(hist["counts"], hist["edges"], fill=True, color="tab:blue", alpha=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if fig is not None:
        fig.tight_layout()
        fig.savefig(path)
    return path


def _length_scatter(report: dict, length: np.ndarray, score: np.ndarray, path: Path) -> Path:
    fig = figure()
    ax = fig.add_subplot()
    keep = length > 0  # a log axis has no place for an empty text
    x, y = length[keep], score[keep]
    if len(x) > SCATTER_MAX:
        art = ax.hexbin(x, y, xscale="log", gridsize=50, mincnt=1, bins="log", cmap="viridis")
        fig.colorbar(art, ax=ax, label="completions")
    elif len(x):
        ax.scatter(x, y, s=8, alpha=0.5, color="tab:blue", linewidths=0)
        ax.set_xscale("log")
    bias = report["length_bias"]["characters"]
    sampled = report["sample"]["is_sample"]
    where = f"sample of {len(x):,} of {report['scored_rows']:,} scored rows" if sampled else f"{len(x):,} rows"
    ax.set_xlabel("completion length (characters, log scale)")
    ax.set_ylabel(report["score_column"])
    ax.set_title(f"Score vs length ({where})\nSpearman: all rows {_signed(bias['all_rows'])}, "
                 f"within prompts {_signed(bias['within_prompts']['mean'])}", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _steps(steps: dict, sample: dict, path: Path) -> Path:
    fig = figure(9.6, 4.0)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sampled = f" (sample of {sample['rows']:,} rows)" if sample["is_sample"] else ""
    _histogram(steps["step_scores"]["histogram"], path, "step score", "steps", f"Step scores{sampled}", ax=left)
    counts = steps["steps_per_completion"]["counts"]
    right.bar([int(k) for k in counts], list(counts.values()), color="tab:green", alpha=0.8)
    right.xaxis.get_major_locator().set_params(integer=True)
    right.yaxis.get_major_locator().set_params(integer=True)
    right.set_xlabel("steps in the completion")
    right.set_ylabel("completions")
    right.set_title("Steps per completion", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _objectives(objectives: list[dict], sample: dict, path: Path) -> Path:
    fig = figure(6.4, 0.25 * len(objectives) + 1.6)
    ax = fig.add_subplot()
    rho = [o["spearman_length"] if o["spearman_length"] is not None else 0.0 for o in objectives]
    ax.barh(range(len(objectives)), rho, color=["tab:red" if r > 0 else "tab:blue" for r in rho])
    for i, o in enumerate(objectives):
        if o["spearman_length"] is None:  # a constant objective has no rank correlation
            ax.text(0.02, i, "n/a", va="center", fontsize=7)
    ax.set_yticks(range(len(objectives)), [o["name"] for o in objectives], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Spearman rank correlation with completion length")
    sampled = f" (sample of {sample['rows']:,} rows)" if sample["is_sample"] else ""
    ax.set_title(f"Length bias per objective{sampled}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _ratio(report: dict, path: Path) -> Path:
    fig = figure()
    ax = fig.add_subplot()
    length = report["length"]
    hist = length["histogram"]
    if hist["counts"]:
        ax.stairs(hist["counts"], hist["edges"], fill=True, color="tab:purple", alpha=0.8)
        low, high = int(np.floor(hist["edges"][0])), int(np.ceil(hist["edges"][-1]))
        ticks = list(range(low, high + 1, 1 if high - low <= 8 else 2))
        ax.set_xticks(ticks, [f"{2 ** t}" if t >= 0 else f"1/{2 ** -t}" for t in ticks])
    ax.axvline(0.0, color="black", linewidth=1)
    cap = (report.get("build_pairs") or {}).get("max_length_ratio")
    if cap:
        ax.axvline(np.log2(cap), color="tab:red", linestyle="--", label=f"--max-length-ratio {cap:g}")
        ax.legend(fontsize=8)
    ax.set_xlabel("length(chosen) / length(rejected), characters (log scale)")
    ax.set_ylabel("pairs")
    ax.set_title(f"Chosen longer than rejected in {100 * length['chosen_longer']:.1f}% of "
                 f"{report['pairs']:,} pairs\n{short_model(report['model'])}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.2f}"
