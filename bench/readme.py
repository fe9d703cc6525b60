"""Regenerates the documentation's figure tables from the committed JSON results, so they never drift.

    python bench/readme.py            # rewrite every marked block of the pages from bench/results/
    python bench/readme.py --check    # exit 1 naming each block that differs from what its JSON renders

The pages are README.md and docs/*.md (`--page PAGE`, repeated, names others); all three blocks
live in docs/benchmarks.md today. A block is the text between `<!-- figures:NAME -->` and
`<!-- /figures:NAME -->`, each marker on a line of its own. NAME picks the JSON and the table:

    footprint   bench/results/footprint.json      (python bench/footprint.py --repeat 3)
    cpu-long    bench/results/bench-cpu-long.json (python bench/run.py --preset cpu-long --repeat 3 --out bench/results)
    cpu         bench/results/bench-cpu.json      (python bench/run.py --preset cpu --repeat 3 --out bench/results)

A block whose JSON is missing, or whose NAME is not one of these, is left as it is, with a warning;
a marker without its pair is an error (exit 2).
Every rendered table starts with a caption: the date, the command, the commit and the machine.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.S)
OPENING = re.compile(r"<!-- (/?)figures:([\w-]+) -->")

LABELS = {  # scorer -> the pages' words for it
    "per-example": "per-example (SimPO, RLHFlow scripts)",
    "fixed-16": "fixed batches of 16 (OpenRLHF, RewardBench)",
    "pipeline": "transformers pipeline, batch 16",
    "rmscore-padded": "rmscore padded (sorted, token budget)",
    "rmscore-packed": "rmscore packed",
    "rmscore-prompt-reuse": "rmscore prompt reuse",
    "rmscore-auto": "**rmscore, defaults** (`auto`",
}


def machine(meta: dict, fallback: str = "") -> str:
    cores = f"{meta['cpu_count']} cores of " if meta.get("cpu_count") else ""
    where = meta.get("device") if meta.get("device", "").startswith(("NVIDIA", "AMD Instinct")) else None
    text = where or f"{cores}{meta.get('cpu_model') or fallback or 'an unrecorded CPU'}"
    load = meta.get("load_average") or []
    if len(load) == 2 and None not in load:
        text += f" (load average {load[0]:g} at the start, {load[1]:g} at the end)"
    return text


def versions(meta: dict) -> str:
    return ", ".join(f"{k} {meta[k]}" for k in ("torch", "transformers") if meta.get(k))


def caption(meta: dict, fallback_machine: str = "") -> str:
    commit = f" at commit {meta['commit']}" if meta.get("commit") else ""
    where = (f"Measured {meta.get('date', 'on an unrecorded date')}{commit} with `{meta.get('command', '?')}` "
             f"on {machine(meta, fallback_machine)}")
    return "; ".join(p for p in (where, versions(meta)) if p)


def seconds(value: float) -> str:
    return f"{value:.2f}"


def max_diff(value: float) -> str:
    return "0" if value == 0 else f"{value:.1e}"


def scorer_row(row: dict) -> str:
    name, _, budget = str(row["scorer"]).partition("@")
    budget = budget or row.get("budget", "-")
    label = LABELS.get(name, name)
    if name == "rmscore-auto":
        label += f", budget {budget})" if budget != "-" else ")"
    elif budget and name.startswith("rmscore") and "@" in str(row["scorer"]):
        label += f", budget {budget}"
    bold = (lambda s: f"**{s}**") if name == "rmscore-auto" else (lambda s: s)
    pct = row["tokens_computed_pct"]
    cells = [label, bold(seconds(row["seconds"])), bold(f"{row['useful_tok_s']:,}"), f"{row['padding_eff']:.2f}",
             "100%" if pct == 100 else f"{pct:.1f}%", max_diff(row["max_abs_diff"])]
    return "| " + " | ".join(cells) + " |"


def speedups(rows: list[dict]) -> str:
    """rmscore's defaults against the per-example loop and fixed batches of 16, from the medians."""
    by = {r["scorer"]: r for r in rows}
    auto = by.get("rmscore-auto")
    against = [(by[k], words) for k, words in (("per-example", "the per-example loop"),
                                               ("fixed-16", "fixed batches of 16")) if k in by]
    if not auto or not against:
        return ""
    ratios = [f"{other['seconds'] / auto['seconds']:.2f}x {words}" for other, words in against]
    return "rmscore at its defaults, in wall time: " + ", ".join(ratios) + "."


def from_header(header: str) -> dict:
    """What a JSON written before run.py recorded it in meta says in its header line."""
    parts = header.split(", ")
    found = {"device": next((p.split("device ", 1)[1] for p in parts if p.startswith("device ")), "")}
    if len(parts) > 2 and parts[1].endswith(" rows") and parts[2].endswith(" tokens"):
        rows, tokens = (int(p.split()[0].replace(",", "")) for p in parts[1:3])
        found |= {"rows": rows, "tokens": tokens}
    if "1 torch thread per process" in parts:
        found["torch_threads"] = 1
    return found


def render_bench(doc: dict) -> str:
    rows, old = doc["rows"], from_header(doc.get("header", ""))
    meta = {k: v for k, v in old.items() if k != "device"} | doc.get("meta", {})
    lines = [caption(meta, old["device"]) + "."]
    workload = [f"{meta['rows']:,} rows, {meta['tokens']:,} tokens" if meta.get("rows") else "",
                f"{meta['torch_threads']} torch thread per process" if meta.get("torch_threads") else ""]
    repeat = meta.get("repeat") or rows[0].get("repeat", 1)
    spreads = [r["spread_s"] for r in rows if "spread_s" in r]
    if repeat > 1:
        workload.append(f"seconds: median of {repeat} rounds over all scorers"
                        + (f" (each scorer's max - min: {min(spreads):.2f}-{max(spreads):.2f} s)" if spreads else ""))
    if any(workload):
        text = "; ".join(w for w in workload if w)
        lines.append(text[0].upper() + text[1:] + ".")
    lines += ["", "| scorer | seconds | useful tok/s | padding efficiency | tokens computed "
              "| max diff vs per-example |", "|---|---:|---:|---:|---:|---:|"]
    lines += [scorer_row(r) for r in rows]
    summary = speedups(rows)
    return "\n".join(lines + (["", summary] if summary else []))


def spread_cell(stat: dict, fmt: str, repeat: int) -> str:
    if repeat < 2:
        return fmt.format(stat["median"])
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}-{fmt.format(stat['max'])})"


def render_footprint(doc: dict) -> str:
    figures = doc["figures"]
    runs: dict[str, list[str]] = {}  # one caption per run of footprint.py (a figure keeps its run's meta)
    for f in figures:
        runs.setdefault(json.dumps(f.get("meta", {}), sort_keys=True), []).append(f["name"])
    lines = [caption(json.loads(key)) + ("" if len(runs) == 1 else f" (figures: {', '.join(names)})") + "."
             for key, names in runs.items()]
    lines.append("Each command runs in its own process as a user runs it, with rmscore's defaults; cells: median "
                 "(min-max) of the runs; peak RSS: the process's ru_maxrss.")
    lines += ["", "| figure | what | command | runs | peak RSS, MiB | wall time, s |", "|---|---|---|---:|---:|---:|"]
    for f in figures:
        lines.append(f"| {f['name']} | {f['what']} | `{f['command']}` | {f['repeat']} "
                     f"| {spread_cell(f['rss_mib'], '{:,.0f}', f['repeat'])} "
                     f"| {spread_cell(f['wall_s'], '{:.1f}', f['repeat'])} |")
    inputs = {}
    for f in figures:
        path = next((a for a in f["command"].split() if a.startswith(("$TMP/", "data/"))), None)
        if path and path not in inputs:
            inputs[path] = f["input"]
    lines += [""] + [f"- `{path}`: {text}" for path, text in inputs.items()]
    return "\n".join(lines)


RENDERERS = {
    "footprint": ("footprint.json", render_footprint),
    "cpu-long": ("bench-cpu-long.json", render_bench),
    "cpu": ("bench-cpu.json", render_bench),
}


def check_markers(text: str) -> list[str]:
    """Problems with the markers themselves: an opening without its closing, or the reverse."""
    found = [(bool(m.group(1)), m.group(2)) for m in OPENING.finditer(text)]
    paired = {m.group("name") for m in BLOCK.finditer(text)}
    return [f"figures:{name}: {'closing' if closing else 'opening'} marker without its pair"
            for closing, name in found if name not in paired]


def rewrite(text: str, results: Path) -> tuple[str, list[str], list[str]]:
    """(the text with every known block rendered, the names of blocks that changed, warnings)."""
    changed, warnings = [], []

    def block(m: re.Match) -> str:
        name = m.group("name")
        if name not in RENDERERS:
            warnings.append(f"figures:{name}: no such table (known: {', '.join(RENDERERS)}); left as it is")
            return m.group(0)
        file, render = RENDERERS[name]
        if not (results / file).exists():
            warnings.append(f"figures:{name}: {results / file} not found; left as it is")
            return m.group(0)
        body = render(json.loads((results / file).read_text())) + "\n"
        if body != m.group("body"):
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(block, text), changed, warnings


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def refresh(page: Path, results: Path, check: bool) -> int:
    """Rewrite (or, with check, only compare) one page's blocks; the exit status for this page."""
    text = page.read_text()
    if not OPENING.search(text):
        return 0
    problems = check_markers(text)
    if problems:
        print("\n".join(f"error: {page}: {p}" for p in problems), file=sys.stderr)
        return 2
    new, changed, warnings = rewrite(text, results)
    for w in warnings:
        print(f"warning: {page}: {w}", file=sys.stderr)
    if check:
        for name in changed:
            print(f"stale: figures:{name} in {page} differs from its JSON; run python bench/readme.py",
                  file=sys.stderr)
        return 1 if changed else 0
    if changed:
        page.write_text(new)
    print(f"{page}: " + (f"rewrote {', '.join(changed)}" if changed else "up to date"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--page", "--readme", dest="pages", action="append", type=Path,
                        help="a page to render (repeatable); default: README.md and docs/*.md")
    parser.add_argument("--results", default=str(REPO / "bench" / "results"), help="folder of the JSON results")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    chosen = args.pages or pages()
    if not any(OPENING.search(page.read_text()) for page in chosen):
        print(f"warning: no figure blocks in {', '.join(str(p) for p in chosen)}", file=sys.stderr)
    return max(refresh(page, Path(args.results), args.check) for page in chosen)


if __name__ == "__main__":
    sys.exit(main())
