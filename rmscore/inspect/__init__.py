"""`rmscore inspect`: do the scores look sane, and do they just prefer longer answers?

  read_scored.py / read_pairs.py   the needed columns, batch by batch, in bounded memory
  stats.py                         pure statistics (summaries, histograms, Spearman within groups)
  report.py                        the content of inspect.json
  text.py                          the one-screen terminal report
  figures.py                       the PNGs (matplotlib, optional: the `plot` extra)
  sample.py / page_rows.py         the rows report.html embeds: which ones, then their texts
  html.py, page/                   report.html: one self-contained page (inline CSS, JS, figures)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rmscore.config import InspectConfig, default_inspect_dir
from rmscore.errors import ConfigError
from rmscore.inspect import figures, html, page_rows, report, text
from rmscore.inspect.read_pairs import read_pairs
from rmscore.inspect.read_scored import is_pairs_file, read_scored, release_memory


@dataclass
class InspectResult:
    report: dict  # what inspect.json holds
    lines: list[str]  # the terminal report
    output: Path  # the folder written to
    files: dict[str, Path] = field(default_factory=dict)  # name -> written file
    missing_plots: str | None = None  # how to get the PNGs, when matplotlib is not installed


def run_inspect(cfg: InspectConfig) -> InspectResult:
    pairs = _is_pairs(cfg)
    out = Path(cfg.output or default_inspect_dir(cfg.inputs[0]))
    if out.is_file():
        raise ConfigError(f"-o {out} is a file", "-o names a folder for inspect.json, the PNGs and report.html")
    if pairs:
        cols = read_pairs(cfg.inputs[0])
        content = report.pairs_report(cols)
    else:
        cols = read_scored(cfg.inputs, cfg.score_column, cfg.sample_rows, cfg.texts, cfg.allow_partial)
        release_memory()
        content = report.scored_report(cols, cfg.inputs, cfg.texts)
    release_memory()
    out.mkdir(parents=True, exist_ok=True)  # only now: a bad input leaves no empty folder behind
    plot = figures.available()
    files = _figures(content, cols, out) if plot else {}
    release_memory()
    content["figures"] = {name: path.name for name, path in files.items()}
    if plot and not files:
        content["figures_note"] = figures.NOTHING[content["kind"]]
    content = report.strict(content)
    figure_files = dict(files)
    files["report"] = out / "inspect.json"
    files["report"].write_text(json.dumps(content, indent=2, default=str, allow_nan=False))
    files["html"] = html.write(out / "report.html", content, _page(cols, pairs, cfg), figure_files)
    return InspectResult(content, text.lines(content), out, files, None if plot else figures.HINT)


def _is_pairs(cfg: InspectConfig) -> bool:
    if not any(is_pairs_file(path) for path in cfg.inputs):
        return False
    if len(cfg.inputs) > 1:
        raise ConfigError("a pairs file is inspected alone", "run rmscore inspect once per input")
    if cfg.score_column != "score":
        raise ConfigError("--score-column applies to scored output; a pairs file has score_chosen/score_rejected",
                          "inspect the scored folder to look at another column")
    return True


def _page(cols, pairs: bool, cfg: InspectConfig) -> dict | None:
    if not cfg.html_rows:
        return None
    rows = page_rows.pairs_page if pairs else page_rows.scored_page
    return rows(cols, cfg.html_rows, cfg.texts)


def _figures(content: dict, cols, out: Path) -> dict[str, Path]:
    """The PNGs, or none when there is nothing to draw (no scored row, no pair with a finite margin)."""
    if content["kind"] == "pairs":
        return figures.pairs_figures(content, out) if content["margin"]["count"] else {}
    if not content["scored_rows"]:
        return {}
    sample = cols.sample  # (k,) the sampled scored rows: the scatter's points
    return figures.scored_figures(content, cols.chars[sample], cols.score[sample], out)

