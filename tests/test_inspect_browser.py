"""report.html in a real headless Chromium (tests/browser.py): no console error, no network request,
the rows the page states with the Parquet's scores, sorting, filtering, and hostile texts shown
as text, never run. Skipped when no Chromium is installed (.ci/run installs it where it can).

The screenshot in docs/ is the demo pairs page, taken with the same driver after `make demo`:
    python tests/browser.py screenshot demo-out/pairs-inspect/report.html docs/inspect-report-demo-pairs.png 1280 1000
"""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import browser as chromium
from cli_runner import run
from test_inspect import pairs_file
from test_inspect_html import HOSTILE, hostile_folder

ROWS = "#table tbody tr.row"
pytestmark = pytest.mark.skipif(chromium.find() is None, reason=chromium.INSTALL)


@pytest.fixture(scope="module")
def page():
    with chromium.Browser(chromium.find()) as b:
        yield b


def opened(page, path: Path):
    seen = len(page.events)
    page.open(path)
    new = page.events[seen:]
    page.events[:] = new  # errors() and requests() below speak of this page only
    assert page.errors() == [] and page.requests() == []


def cells(page, column: str) -> list:
    return page.eval(f"[...document.querySelectorAll('{ROWS} td[data-col={column}]')]"
                     ".map(td => td.dataset.value === undefined ? td.textContent : Number(td.dataset.value))")


def change(page, element: str, value: str) -> int:
    """Sets a control as a user would; the number of table rows after."""
    event = "input" if element == "filter" else "change"
    return page.eval(f"(() => {{ const e = document.getElementById({json.dumps(element)}); e.value = {json.dumps(value)};"
                     f" e.dispatchEvent(new Event('{event}')); return document.querySelectorAll('{ROWS}').length; }})()")


def test_scored_page_renders_the_stated_rows_and_runs_no_injected_text(page, tmp_path):
    folder = hostile_folder(tmp_path / "s")
    run("inspect", folder, "-o", tmp_path / "out")
    opened(page, tmp_path / "out" / "report.html")
    shown = int(page.eval("document.getElementById('sample-note').dataset.shown"))
    assert page.eval(f"document.querySelectorAll('{ROWS}').length") == shown == 16
    parquet = pq.read_table(folder / "part-0.parquet").column("score").to_pylist()
    scores = cells(page, "score")
    assert sorted(s for s in scores if s != "n/a") == sorted(s for s in parquet if s is not None)
    assert scores[:3] == [13, 12, 11]  # grouped by prompt: the best prompt first, its rows best first
    assert page.eval("document.querySelectorAll('#table tbody tr.group').length") == 6  # one per prompt
    # The injected markup is text in its cell: nothing ran, no element was made from it.
    assert page.eval("window.pwned === undefined && document.querySelectorAll('#table img, #table svg, "
                     "#table textarea, body script:not([type])').length === 1")
    assert sorted(t for t in cells(page, "text") if "pwned" in t) == sorted(HOSTILE[:3])
    assert page.eval("document.title") == "rmscore inspect: s"


def test_scored_page_sorts_and_filters(page, tmp_path):
    run("inspect", hostile_folder(tmp_path / "s"), "-o", tmp_path / "out")
    opened(page, tmp_path / "out" / "report.html")
    page.eval("(() => { const g = document.getElementById('group'); g.checked = false; "
              "g.dispatchEvent(new Event('change')); })()")
    assert change(page, "sort", "score-asc") == 16
    scores = cells(page, "score")
    assert scores[:13] == sorted(scores[:13]) and scores[13:] == ["n/a"] * 3  # unscored rows last
    assert change(page, "sort", "chars-desc") == 16
    chars = cells(page, "chars")
    assert chars[0] == max(map(len, HOSTILE)) and chars[:15] == sorted(chars[:15], reverse=True) and chars[15] == "n/a"
    assert change(page, "filter", "ONERROR") == 1  # case-insensitive, over completions
    assert change(page, "filter", "pwned") == 4  # and prompts: the evil prompt's 4 rows
    assert change(page, "filter", "") == 16
    assert change(page, "status", "!ok") == 3
    assert set(cells(page, "status")) == {"too_long", "invalid_row"} and "null completion" in cells(page, "reason")


def test_pairs_page_sort_by_margin_and_the_only_longer_view(page, tmp_path):
    rng = np.random.default_rng(2)
    pairs = [("a" * int(rng.integers(5, 200)), "b" * int(rng.integers(5, 200)), float(rng.normal(1, 1)), 0.0)
             for _ in range(300)]
    run("inspect", pairs_file(tmp_path / "p.parquet", pairs), "-o", tmp_path / "out", "--html-rows", "120")
    opened(page, tmp_path / "out" / "report.html")
    assert page.eval(f"document.querySelectorAll('{ROWS}').length") == 120
    margins = cells(page, "margin")
    assert margins[0] == max(c - r for _, _, c, r in pairs) and margins == sorted(margins, reverse=True)
    data = json.loads(page.eval("document.getElementById('rows-data').textContent"))
    shown = page.eval(f"(() => {{ document.getElementById('only-longer').click(); "
                      f"return document.querySelectorAll('{ROWS}').length; }})()")
    assert shown == data["only_longer_shown"] > 0
    ratio, margins = cells(page, "ratio"), cells(page, "margin")
    assert all(r > 1 for r in ratio) and max(margins) <= data["small_margin"] and margins == sorted(margins)
    assert change(page, "filter", "p1") < shown  # prompt ids p1, p10-p19, p100-p199 only


def test_a_screenshot_of_the_page(page, tmp_path):
    run("inspect", hostile_folder(tmp_path / "s"), "-o", tmp_path / "out", "--no-text")
    opened(page, tmp_path / "out" / "report.html")
    assert page.eval("document.querySelectorAll('td.text').length") == 0
    shot = page.screenshot(tmp_path / "shot.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(shot[16:20], "big") == 1280


def test_the_demo_pairs_page(page, made_demo):
    root, _ = made_demo
    opened(page, root / "demo-out" / "pairs-inspect" / "report.html")
    assert page.eval(f"document.querySelectorAll('{ROWS}').length") == 200  # every demo pair: 200 < 2,000
    assert page.eval("document.getElementById('count').textContent").startswith("Texts left out (--no-text).")


def test_the_table_grows_by_steps_to_every_row_on_the_page(page, tmp_path):
    pairs = [("a" * (5 + i % 50), "b" * (5 + i % 70), float(i % 13), 0.0) for i in range(700)]
    run("inspect", pairs_file(tmp_path / "p.parquet", pairs), "-o", tmp_path / "out", "--html-rows", "600")
    opened(page, tmp_path / "out" / "report.html")
    count = "document.querySelectorAll('" + ROWS + "').length"
    assert page.eval(count) == 250 and "the table shows the first 250" in page.eval(
        "document.getElementById('count').textContent")
    assert page.eval(f"(() => {{ document.getElementById('show-more').click(); return {count}; }})()") == 500
    assert page.eval(f"(() => {{ document.getElementById('show-all').click(); return {count}; }})()") == 600
    assert page.eval("document.getElementById('sample-note').dataset.shown") == "600"
    assert page.eval("document.getElementById('more').children.length") == 0
    assert change(page, "sort", "margin-asc") == 250  # a new order starts from the top again


def test_combined_folder_model_columns_and_the_disagree_filter(page, tmp_path):
    from test_combine import two_models

    a, b = two_models(tmp_path)
    run("combine", a, b, "-o", tmp_path / "ens", "--method", "mean")
    run("inspect", tmp_path / "ens", "-o", tmp_path / "out")
    opened(page, tmp_path / "out" / "report.html")
    data = json.loads(page.eval("document.getElementById('rows-data').textContent"))
    heads = page.eval("[...document.querySelectorAll('#table thead th')].map(th => th.textContent)")
    assert heads[heads.index("score") + 1:heads.index("score") + 3] == ["rm-a", "rm-b"]
    page.eval("(() => { const g = document.getElementById('group'); g.checked = false; "
              "g.dispatchEvent(new Event('change')); })()")
    assert change(page, "sort", "row-asc") == 8
    parquet = pq.read_table(tmp_path / "ens").sort_by([("input_index", "ascending"), ("completion_index",
                                                                                      "ascending")])
    for m in (0, 1):
        want = [s[m] for s in parquet.column("model_scores").to_pylist()]
        assert cells(page, f"model-{m}") == ["n/a" if x is None else x for x in want]
    shown = page.eval(f"(() => {{ document.getElementById('disagree').click(); "
                      f"return document.querySelectorAll('{ROWS}').length; }})()")
    assert shown == sum(r["disagree"] for r in data["rows"]) == 5
    ids = page.eval(f"[...document.querySelectorAll('{ROWS} td:first-child')].map(td => td.textContent)")
    assert sorted(i[0] for i in ids) == ["p", "p", "p", "q", "q"]  # the prompt box: id, then "prompt"
    assert change(page, "sort", "m1-desc") == 5 and cells(page, "model-1") == [30.0, 20.0, 10.0, 2.0, 1.0]
    assert page.eval(f"(() => {{ document.getElementById('disagree').click(); "
                     f"return document.querySelectorAll('{ROWS}').length; }})()") == 8
    run("build-pairs", tmp_path / "ens", "-o", tmp_path / "pairs.parquet")
    run("inspect", tmp_path / "pairs.parquet", "-o", tmp_path / "pout")
    opened(page, tmp_path / "pout" / "report.html")
    assert cells(page, "agreement") == [0.5, 0.5] and change(page, "sort", "agreement-asc") == 2
    assert page.eval(f"(() => {{ document.getElementById('disagree').click(); "
                     f"return document.querySelectorAll('{ROWS}').length; }})()") == 2
