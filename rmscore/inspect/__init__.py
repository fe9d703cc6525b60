"""`rmscore inspect`: do the scores look sane, and do they just prefer longer answers?

  read_scored.py / read_pairs.py   the needed columns, batch by batch, in bounded memory
  stats.py                         pure statistics (summaries, histograms, Spearman within groups)
  report.py                        the content of inspect.json
  text.py                          the one-screen terminal report
  figures.py                       the PNGs (matplotlib, optional: the `plot` extra)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rmscore.config import InspectConfig, default_inspect_dir
from rmscore.errors import ConfigError
from rmscore.inspect import figures, report, text
from rmscore.inspect.read_pairs import read_pairs
from rmscore.inspect.read_scored import is_pairs_file, read_scored


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
        raise ConfigError(f"-o {out} is a file", "-o names a folder for inspect.json and the PNGs")
    out.mkdir(parents=True, exist_ok=True)
    plot = figures.available()
    content, files = _pairs(cfg, out, plot) if pairs else _scored(cfg, out, plot)
    content["figures"] = {name: path.name for name, path in files.items()}
    files["report"] = out / "inspect.json"
    files["report"].write_text(json.dumps(content, indent=2, default=str))
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


def _scored(cfg: InspectConfig, out: Path, plot: bool) -> tuple[dict, dict[str, Path]]:
    cols = read_scored(cfg.inputs, cfg.score_column, cfg.sample_rows, cfg.texts)
    content = report.scored_report(cols, cfg.inputs, cfg.texts)
    sample = cols.sample  # (k,) the sampled scored rows: the scatter's points
    return content, figures.scored_figures(content, cols.chars[sample], cols.score[sample], out) if plot else {}


def _pairs(cfg: InspectConfig, out: Path, plot: bool) -> tuple[dict, dict[str, Path]]:
    content = report.pairs_report(read_pairs(cfg.inputs[0]))
    return content, figures.pairs_figures(content, out) if plot else {}
