"""PNG plots of evaluation results (matplotlib, imported only here and only when a plot is asked for).

Figures are drawn on the Agg canvas directly, never through pyplot, so no window or global backend
state is touched (works on a headless node).
"""

from __future__ import annotations

from pathlib import Path

from rmscore.errors import ConfigError

LABELS = {
    "reward_model": "reward model (best score)",
    "random": "random pick",
    "oracle": "oracle (any correct)",
    "majority_vote": "majority vote",
    "weighted_vote": "reward-weighted vote",
}
STYLES = {"random": ":", "oracle": "--"}


def figure(width: float = 6.4, height: float = 4.4):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError("plots need matplotlib, which is not installed",
                          "pip install 'rmscore[plot]' (or pip install matplotlib)") from exc
    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def best_of_n(curves, path: Path, title: str) -> Path:
    """Accuracy against N (log2 axis), one line per selector."""
    fig = figure()
    ax = fig.add_subplot()
    for name, values in curves.accuracy.items():
        ax.plot(curves.ns, [100 * v for v in values], STYLES.get(name, "-"), marker="o", markersize=4,
                label=LABELS.get(name, name))
    ax.set_xscale("log", base=2)
    ax.set_xticks(curves.ns, [str(n) for n in curves.ns])
    ax.set_xlabel("N (completions drawn per prompt)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def margins(values: list[float], path: Path, title: str, bins: int = 40) -> Path:
    """Histogram of chosen - rejected score margins, with the zero line."""
    fig = figure()
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, color="tab:blue", alpha=0.8)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_xlabel("score(chosen) - score(rejected)")
    ax.set_ylabel("pairs")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path
