"""The one-screen terminal report, from the inspect.json content (report.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

WIDTH = 100
EXAMPLE_LINES = 2


def lines(report: dict) -> list[str]:
    return (scored_lines if report["kind"] == "scored" else pairs_lines)(report)


def scored_lines(r: dict) -> list[str]:
    out = [f"{', '.join(r['inputs']) if len(r['inputs']) < 3 else str(len(r['inputs'])) + ' files'}: "
           f"{r['rows']:,} rows, {r['scored_rows']:,} scored ({_pct(r['scored_rows'], r['rows'])}), "
           f"model {short_model(r['model'])} ({r['model_type']}), column {r['score_column']}"]
    out += _status_lines(r["status"], r["rows"])
    if r.get("non_finite"):
        found = ", ".join(f"{kind} {n:,}" for kind, n in r["non_finite"].items())
        out.append(f"  not finite: {sum(r['non_finite'].values()):,} rows with status ok/truncated have no finite "
                   f"{r['score_column']} ({found}); left out of every statistic below")
    out.append(f"  {r['score_column']}: {_summary(r['score'])}")
    for name, values in r["length"].items():
        unit = "chars" if name == "characters" else "tokens (prompt included)"
        out.append(f"  length, {unit}: {_summary(values, 0)}")
    out += _bias_lines(r["length_bias"])
    if "objectives" in r:
        out += _objective_lines(r["objectives"], r["sample"])
    if "steps" in r:
        out += _step_lines(r["steps"], r["sample"])
    if "agreement" in r:
        out += _agreement_lines(r["agreement"], r["sample"])
    if r.get("figures_note"):
        out.append(f"  {r['figures_note']}")
    for side in ("highest", "lowest"):
        if not r["examples"][side]:
            continue
        out.append(f"  {side} {r['score_column']}:")
        out += [line for e in r["examples"][side] for line in _example_lines(e)]
    return out


def pairs_lines(r: dict) -> list[str]:
    n, length = r["pairs"], r["length"]
    ratio, left_out = length["ratio"], sum(length["ratio"]["left_out"].values())
    empty = f"; {left_out:,} with an empty answer left out" if left_out else ""
    settings = r.get("build_pairs") or {}
    rule = f", rule {settings['rule']}" if "rule" in settings else ""
    cap = settings.get("max_length_ratio")
    out = [f"{r['inputs'][0]}: {n:,} pairs from {r['prompts']:,} prompts, model {short_model(r['model'])}{rule}"
           + (f", --max-length-ratio {cap}" if cap else ""),
           f"  margin: {_summary(r['margin'])}",
           f"  chosen longer than rejected: {_pct(length['chosen_longer'] * n, n)} of pairs "
           f"(same length {_pct(length['same_length'] * n, n)}, shorter {_pct(length['chosen_shorter'] * n, n)})",
           f"  length ratio chosen/rejected (chars, {ratio['count']:,} pairs{empty}): median "
           f"{_num(ratio.get('p50'))}, p95 {_num(ratio.get('p95'))}; over 1.5x {_pct(ratio['over_1.5'], 1)}, "
           f"over 2x {_pct(ratio['over_2'], 1)}",
           f"  mean length: chosen {_num(length['chars_chosen'].get('mean'), 0)} chars, "
           f"rejected {_num(length['chars_rejected'].get('mean'), 0)} chars"]
    out += _bias_lines(r["length_bias"])
    if r.get("figures_note"):
        out.append(f"  {r['figures_note']}")
    return out


def _status_lines(status: dict, rows: int) -> list[str]:
    counts = ", ".join(f"{s} {v['rows']:,} ({_pct(v['rows'], rows)})" for s, v in status.items())
    out = [f"  status: {counts or 'no rows'}"]
    for name, value in status.items():
        for reason, count in list(value["reasons"].items())[:2]:  # numbers in reasons read N: grouped
            out.append(_cut(f"    {name}: {count:,} x {reason}"))
        if len(value["reasons"]) > 2:
            out.append(f"    {name}: {len(value['reasons']) - 2} other reason(s), see inspect.json")
    return out


def _bias_lines(bias: dict) -> list[str]:
    out = ["  length bias, Spearman rank correlation of score with length:"]
    for name, values in bias.items():
        unit = "chars" if name == "characters" else "tokens"
        within = values["within_prompts"]
        all_rows = f"all rows {_signed(values['all_rows'])}, " if "all_rows" in values else ""
        out.append(f"    {unit:<6} {all_rows}within prompts {_signed(within['mean'])} "
                   f"(mean over {within['groups']:,} prompts; {within['skipped']:,} without one)")
    return out


def _objective_lines(objectives: list[dict], sample: dict) -> list[str]:
    out = [f"  objectives{_sampled(sample)}:  mean   std    p5     p50    p95   rho(len) gate"]
    for o in objectives:
        numbers = " ".join(f"{_num(o.get(k)):>6}" for k in ("mean", "std", "p5", "p50", "p95"))
        out.append(f"    {o['name'][:32]:<32} {numbers} {_signed(o['spearman_length']):>7} "
                   f"{_num(o['gating_mean'])}")
    return out


def _agreement_lines(a: dict, sample: dict) -> list[str]:
    every = a["all"]
    out = [f"  models agree{_sampled(sample)}: same order on {_share(every['pairs_all_agree'])} of {every['pairs']:,} "
           f"completion pairs within prompts; same best completion in {_share(every['top_all_agree'])} of "
           f"{every['prompts']:,} prompts"]
    for m, name in enumerate(a["models"]):
        out.append(f"    model {m}: {short_model(name)}")
    for p in a["by_pair"]:
        rho = p["spearman_within_prompts"]
        out.append(f"    model {p['models'][0]} vs {p['models'][1]}: Spearman within prompts {_signed(rho['mean'])} "
                   f"({rho['groups']:,} prompts), same order on {_share(p['same_order'])} of pairs")
    return out


def _share(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _step_lines(s: dict, sample: dict) -> list[str]:
    out = [f"  steps per completion: {_summary(s['steps_per_completion'], 1)}",
           f"  step scores{_sampled(sample)}: {_summary(s['step_scores'])}"]
    relations = ", ".join(f"{k.replace('score_', '')} {_signed(v)}" for k, v in s["aggregate_spearman"].items())
    if relations:
        out.append(_cut(f"  aggregates (score = {s['aggregate']}), rank correlations: {relations}"))
    if s.get("min_is_last") is not None:
        out.append(f"  the weakest step is the last one in {_pct(s['min_is_last'], 1)} of completions")
    return out


def _example_lines(e: dict) -> list[str]:
    head = f"    {_num(e['score'], sign='+')}  {e['chars']:,} chars  prompt {e['prompt_id']}"
    if "completion" not in e:
        return [head + "  (text hidden: --no-text)"]
    out = [head]
    if e.get("prompt"):
        out.append(_cut("      Q: " + " ".join(e["prompt"].split())))
    body = textwrap.wrap(" ".join(e["completion"].split()), WIDTH - 9) or [""]
    cut = len(body) > EXAMPLE_LINES or len(e["completion"]) < e["chars"]
    out += [f"      {'A: ' if i == 0 else '   '}{line}" for i, line in enumerate(body[:EXAMPLE_LINES])]
    if cut:
        out[-1] = out[-1][:WIDTH - 1] + "…"
    return out


def short_model(model: str | None) -> str:
    """A local checkpoint by its folder name (the demo model's full path says little); Hub names as they are."""
    return Path(model).name if model and Path(model).is_absolute() else str(model)


def _summary(s: dict, digits: int = 3) -> str:
    left_out = f"  ({s['non_finite']:,} not finite, left out)" if s.get("non_finite") else ""
    if not s.get("count"):
        return "no values" + left_out
    q = " ".join(f"{k} {_num(s[k], digits)}" for k in ("p5", "p50", "p95"))
    return (f"n {s['count']:,}  mean {_num(s['mean'], digits)}  std {_num(s['std'], digits)}  "
            f"min {_num(s['min'], digits)}  {q}  max {_num(s['max'], digits)}{left_out}")


def _sampled(sample: dict) -> str:
    return f" (sample of {sample['rows']:,} of {sample['of']:,} rows)" if sample["is_sample"] else ""


def _num(value, digits: int = 3, sign: str = "") -> str:
    """Fixed point up to a billion; beyond, 1.235e+300 (4 significant digits), not 300 digits."""
    if value is None:
        return "n/a"
    if abs(value) >= 1e9:
        return f"{value:{sign}.4g}"
    return f"{value:{sign},.{digits}f}"


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _cut(line: str) -> str:
    return line if len(line) <= WIDTH else line[:WIDTH - 1] + "…"
