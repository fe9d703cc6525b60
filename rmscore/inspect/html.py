"""report.html: one self-contained page (inline CSS and JS, figures as data: URIs, no network).

The summary is static HTML built here from the inspect.json content, every value escaped. The
rows (page_rows.py) travel as JSON inside a non-executed <script type="application/json"> block,
with <, > and & written as \\u escapes so no text can close it; report.js puts them in the table
with textContent only. The Content-Security-Policy allows only this page's own style and script
(by hash) and data: images: an injected tag can neither run nor fetch anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
from html import escape
from pathlib import Path

from rmscore.inspect.text import short_model

PAGE = Path(__file__).parent / "page"
QUANTILES = ("count", "mean", "std", "min", "p5", "p25", "p50", "p75", "p95", "max")


def write(path: Path, report: dict, page: dict | None, figures: dict[str, Path]) -> Path:
    path.write_text(render(report, page, figures), encoding="utf-8")
    return path


def render(report: dict, page: dict | None, figures: dict[str, Path]) -> str:
    css, js = (PAGE / "report.css").read_text(), (PAGE / "report.js").read_text()
    data = {"kind": report["kind"], "score_column": report.get("score_column"), **(page or {"rows": []})}
    body = (_scored if report["kind"] == "scored" else _pairs)(report)
    name = ", ".join(Path(p).name for p in report["inputs"][:2]) + (" …" if len(report["inputs"]) > 2 else "")
    return "\n".join([
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{_policy(css, js)}">',
        f"<title>rmscore inspect: {escape(name)}</title>", f"<style>{css}</style>", "</head>", "<body>",
        body, _figures(figures, report.get("figures_note")), _rows_section(report, page),
        f'<script type="application/json" id="rows-data">{embed_json(data)}</script>',
        f"<script>{js}</script>", "</body>", "</html>", ""])


def embed_json(value) -> str:
    """JSON that is safe inside a <script> element: no <, > or & left to end it or open a comment."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                       ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text


def _policy(css: str, js: str) -> str:
    def digest(text):
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
    return (f"default-src 'none'; img-src data:; style-src {digest(css)}; script-src {digest(js)}; "
            "base-uri 'none'; form-action 'none'")


def _scored(r: dict) -> str:
    inputs = ", ".join(r["inputs"]) if len(r["inputs"]) < 4 else f"{len(r['inputs'])} inputs"
    parts = [f"<header><h1>rmscore inspect: {escape(inputs)}</h1>",
             _facts({"rows": f"{r['rows']:,}", "scored": f"{r['scored_rows']:,} ({_pct(r['scored_rows'], r['rows'])})",
                     "files": r["files"], "model": short_model(r["model"]), "model type": r["model_type"],
                     "score column": r["score_column"]}), "</header>",
             "<section><h2>Rows by status</h2>", _status(r["status"], r["rows"]), _non_finite(r), "</section>",
             "<section><h2>Distributions</h2>",
             _summaries({r["score_column"]: r["score"], **{f"length, {k}": v for k, v in r["length"].items()}},
                        tuple(f"length, {k}" for k in r["length"])),
             "</section>", _bias(r["length_bias"])]
    if "objectives" in r:
        parts.append(_objectives(r["objectives"], r["sample"]))
    if "steps" in r:
        parts.append(_steps(r["steps"], r["sample"]))
    if "agreement" in r:
        parts.append(_agreement(r["agreement"], r["sample"]))
    return "\n".join(parts)


def _pairs(r: dict) -> str:
    length, settings = r["length"], r.get("build_pairs") or {}
    facts = {"pairs": f"{r['pairs']:,}", "prompts": f"{r['prompts']:,}", "model": short_model(r["model"]),
             **{f"build-pairs {k}": v for k, v in settings.items() if v is not None and not isinstance(v, (dict, list))}}
    n = max(r["pairs"], 1)
    longer = {"chosen longer": _pct(length["chosen_longer"] * n, n), "same length": _pct(length["same_length"] * n, n),
              "chosen shorter": _pct(length["chosen_shorter"] * n, n),
              "ratio over 1.5": _pct(length["ratio"]["over_1.5"], 1), "ratio over 2": _pct(length["ratio"]["over_2"], 1)}
    longer |= {k.replace("_", " "): v for k, v in (length["ratio"].get("left_out") or {}).items() if v}
    return "\n".join([
        f"<header><h1>rmscore inspect: {escape(r['inputs'][0])}</h1>", _facts(facts), "</header>",
        "<section><h2>Distributions</h2>",
        _summaries({"margin": r["margin"], "length ratio chosen/rejected (chars)": length["ratio"],
                    "chosen, chars": length["chars_chosen"], "rejected, chars": length["chars_rejected"]},
                   ("chosen, chars", "rejected, chars")),
        _facts(longer), "</section>", _bias(r["length_bias"])])


def _facts(facts: dict) -> str:
    items = "".join(f"<div><dt>{escape(str(k))}</dt><dd>{escape(str(v))}</dd></div>" for k, v in facts.items())
    return f'<dl class="facts">{items}</dl>'


def _table(head: list[str], rows: list[list], cls: str = "") -> str:
    th = "".join(f"<th>{escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _status(status: dict, rows: int) -> str:
    table = [[name, f"{v['rows']:,}", _pct(v["rows"], rows),
              "; ".join(f"{n:,} × {reason}" for reason, n in list(v["reasons"].items())[:5])
              + (f"; {len(v['reasons']) - 5} other reasons in inspect.json" if len(v["reasons"]) > 5 else "")]
             for name, v in status.items()]
    return _table(["status", "rows", "share", "reasons (numbers read N)"], table, "summary")


def _non_finite(r: dict) -> str:
    counts = r.get("non_finite") or {}
    if not counts:
        return ""
    what = ", ".join(f"{n:,} {kind}" for kind, n in counts.items())
    return f"<p>Status ok or truncated, but no finite score (left out of every statistic): {escape(what)}.</p>"


def _summaries(named: dict, lengths: tuple[str, ...] = ()) -> str:
    """One row per summary; the rows named in `lengths` (characters, tokens, steps) to 1 decimal."""
    def digits(name, q):
        return 0 if q == "count" else 1 if name in lengths else 3
    rows = [[name] + [_num(s.get(q), digits(name, q)) for q in QUANTILES] for name, s in named.items()]
    return _table([""] + list(QUANTILES), rows, "summary numbers")


def _bias(bias: dict) -> str:
    all_rows = all("all_rows" in v for v in bias.values())  # pairs files: within prompts only
    rows = [[unit] + ([_signed(v["all_rows"])] if all_rows else [])
            + [_signed(v["within_prompts"]["mean"]), f"{v['within_prompts']['groups']:,}",
               f"{v['within_prompts']['skipped']:,}", _pct(v["within_prompts"]["positive"] or 0, 1)
               if v["within_prompts"]["positive"] is not None else "n/a"]
            for unit, v in bias.items()]
    head = ["length"] + (["all rows"] if all_rows else []) + ["within prompts", "prompts", "prompts without one",
                                                              "share positive"]
    return ("<section><h2>Length bias</h2><p>Spearman rank correlation of score with length"
            + (": over all rows, and" if all_rows else "") + " within each prompt, averaged over prompts "
            "(the bias preference pairs inherit).</p>" + _table(head, rows, "summary numbers") + "</section>")


def _objectives(objectives: list[dict], sample: dict) -> str:
    rows = [[o["name"], *(_num(o.get(k)) for k in ("mean", "std", "p5", "p50", "p95")),
             _signed(o["spearman_length"]), _signed(o["spearman_score"]), _num(o["gating_mean"])] for o in objectives]
    return (f"<section><h2>Objectives{_sampled(sample)}</h2>"
            + _table(["objective", "mean", "std", "p5", "p50", "p95", "rho(length)", "rho(score)", "gating mean"],
                     rows, "summary numbers") + "</section>")


def _steps(s: dict, sample: dict) -> str:
    named = {"steps per completion": s["steps_per_completion"], f"step scores{_sampled(sample)}": s["step_scores"],
             **{f"{k}{_sampled(sample)}": v for k, v in s["aggregates"].items()}}
    facts = {"score is": s["aggregate"], **{k: _signed(v) for k, v in s["aggregate_spearman"].items()}}
    if s.get("min_is_last") is not None:
        facts["weakest step is the last"] = _pct(s["min_is_last"], 1)
    return ("<section><h2>Process reward: steps</h2>" + _summaries(named, ("steps per completion",))
            + _facts(facts) + "</section>")


def _agreement(a: dict, sample: dict) -> str:
    """A combined folder: how often its models order a prompt's completions alike (inspect.json's agreement)."""
    every, names = a["all"], [short_model(n) for n in a["models"]]
    facts = {"same order, completion pairs within prompts": f"{_pct(every['pairs_all_agree'] or 0, 1)} of "
             f"{every['pairs']:,}" if every["pairs_all_agree"] is not None else "n/a",
             "same best completion": f"{_pct(every['top_all_agree'] or 0, 1)} of {every['prompts']:,} prompts"
             if every["top_all_agree"] is not None else "n/a"}
    rows = [[f"{names[p['models'][0]]} vs {names[p['models'][1]]}", _signed(p["spearman_within_prompts"]["mean"]),
             f"{p['spearman_within_prompts']['groups']:,}",
             _pct(p["same_order"], 1) if p["same_order"] is not None else "n/a"] for p in a["by_pair"]]
    return (f"<section><h2>Models agree{_sampled(sample)}</h2>" + _facts(facts)
            + _table(["models", "Spearman within prompts", "prompts", "same order"], rows, "summary numbers")
            + "</section>")


def _figures(figures: dict[str, Path], note: str | None) -> str:
    if not figures:
        note = note or "no figures: matplotlib is not installed (pip install 'rmscore[plot]')"
        return f"<section><h2>Figures</h2><p>{escape(note[0].upper() + note[1:])}.</p></section>"
    images = "".join(f'<figure><img alt="{escape(name)}" src="data:image/png;base64,'
                     f'{base64.b64encode(path.read_bytes()).decode()}"></figure>' for name, path in figures.items())
    return f'<section><h2>Figures</h2><div class="figures">{images}</div></section>'


def _rows_section(report: dict, page: dict | None) -> str:
    if page is None:
        return "<section><h2>Rows</h2><p>No rows embedded (--html-rows 0).</p></section>"
    what = "pairs" if report["kind"] == "pairs" else "rows"
    parts = "; ".join(p["says"] for p in page["parts"])
    note = (f"This page holds {page['shown']:,} of {page['of']:,} {what}" + (f": {parts}" if parts else "")
            + (". Random draws use seed 0" if page["shown"] < page["of"] else "")
            + ". --html-rows sets how many rows a page holds; the statistics above use every row.")
    return "\n".join([
        f'<section id="rows"><h2>{"Pairs" if what == "pairs" else "Completions"}</h2>',
        f'<p id="sample-note" data-shown="{page["shown"]}" data-of="{page["of"]}">{escape(note)}</p>',
        _disagree_note(report, page), '<div id="controls"></div><p id="count"></p>',
        '<table id="table"><thead></thead><tbody></tbody></table><p id="more"></p></section>'])


def _disagree_note(report: dict, page: dict) -> str:
    """What the "models disagree" filter keeps: stated on the page (a combined folder, or pairs built from one)."""
    if "disagree" not in page:
        return ""
    if report["kind"] == "pairs":
        what = (f"Models disagree: a pair whose agreement (the share of models whose own scores prefer the chosen "
                f"answer) is under 1; {page['disagree']:,} of the {page['of']:,} pairs in the file.")
    else:
        what = (f"One column per model ({', '.join(page['models'])}) holds its own score. Models disagree: a "
                "completion whose rank within its prompt (by each model's own score; ties share the average rank; "
                "among the prompt's scored completions) is not the same for every model; "
                f"{page['disagree']:,} of the {page['of']:,} rows in the folder, in {page['disagree_prompts']:,} "
                "prompt(s).")
    return f'<p id="disagree-note" data-rows="{page["disagree"]}">{escape(what)}</p>'


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}" if abs(value) < 1e9 else f"{value:.4g}"  # 1e308 as 1e+308, not 309 digits


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _sampled(sample: dict) -> str:
    return f" (sample of {sample['rows']:,} of {sample['of']:,} rows)" if sample["is_sample"] else ""
