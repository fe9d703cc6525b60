"""report.html without a browser: what the page holds, parsed with the standard library.

Completions are untrusted model output: hostile texts must reach the page as data only (inside the
JSON block, with no raw <, > or &) and come back out of it unchanged. The page must reference
nothing over the network. The browser tests (test_inspect_browser.py) check the same page rendered.
"""

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import scored_data as sd
from cli_runner import run
from rmscore.inspect import sample
from rmscore.inspect.html import embed_json
from rmscore.inspect.page_rows import TEXT_CHARS
from test_inspect import LONG_DETAIL, length_table, pairs_file, write

HOSTILE = ['</script><script>window.pwned = 1</script>', '<img src=x onerror="window.pwned = 2">',
           '</textarea><svg onload="window.pwned = 3">', "<!-- & \u2028 --> ]]> {{x}} <b>bold</b>"]


class Page(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.scripts, self._in = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in = dict(attrs)
            self.scripts.append([dict(attrs), ""])

    def handle_data(self, data):
        if self._in is not None:
            self.scripts[-1][1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None

    def data(self) -> dict:
        [(_, text)] = [s for s in self.scripts if s[0].get("type") == "application/json"]
        return json.loads(text)


def hostile_folder(folder: Path) -> Path:
    rows = length_table() + sd.rows("evil", [0.5, 0.7, 0.9, 1.1], texts=HOSTILE, input_index=20,
                                    prompt="<script>window.pwned = 4</script> prompt")
    return write(folder / "part-0.parquet", rows).parent


def inspect_html(*args) -> tuple[str, Page, str]:
    result = run("inspect", *args)
    out = Path(args[args.index("-o") + 1])
    text = (out / "report.html").read_text()
    return text, Page(text), result.output


def test_scored_page_holds_the_rows_it_states_with_their_parquet_scores(tmp_path):
    text, page, output = inspect_html(hostile_folder(tmp_path / "s"), "-o", tmp_path / "out")
    assert f"open {tmp_path / 'out' / 'report.html'}" in output
    data = page.data()
    note = next(attrs for tag, attrs in page.tags if attrs.get("id") == "sample-note")
    assert int(note["data-shown"]) == len(data["rows"]) == data["shown"] == 16 and int(note["data-of"]) == 16
    assert "This page holds 16 of 16 rows: every one." in text  # fewer rows than --html-rows: all of them
    table = pq.read_table(tmp_path / "s" / "part-0.parquet").to_pylist()
    want = {(r["prompt_id"], r["completion_index"]): r for r in table}
    for row in data["rows"]:
        parquet = want[(row["prompt_id"], row["completion_index"])]
        assert row["score"] == parquet["score"] and row["status"] == parquet["status"]
        assert row["text"] == (parquet["completion"] or "") and row["reason"] == parquet["status_detail"]
    ranks = {(r["prompt_id"], r["completion_index"]): r["rank"] for r in data["rows"]}
    assert ranks[("p0", 2)] == 1 and ranks[("p0", 0)] == 3 and ranks[("p9", 0)] is None  # 1: the prompt's best
    assert {(r["of"], r["ranked"]) for r in data["rows"] if r["prompt_id"] in ("p0", "p9")} == {(3, 3), (2, 0)}
    assert data["prompts"]["evil"] == "<script>window.pwned = 4</script> prompt"
    assert {r["reason"] for r in data["rows"] if r["status"] == "too_long"} == {
        LONG_DETAIL.format(5000), LONG_DETAIL.format(6123)}


def test_hostile_text_is_data_only_and_nothing_is_fetched(tmp_path):
    text, page, _ = inspect_html(hostile_folder(tmp_path / "s"), "-o", tmp_path / "out")
    # Only the page's own two scripts, one of them a data block; no element from the texts.
    assert [attrs.get("type") for attrs, _ in page.scripts] == ["application/json", None]
    assert {tag for tag, _ in page.tags} <= {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2",
                                             "dl", "div", "dt", "dd", "section", "table", "thead", "tbody", "tr",
                                             "th", "td", "p", "figure", "img", "script"}
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    [json_block] = [body for attrs, body in page.scripts if attrs.get("type") == "application/json"]
    assert not set("<>&") & set(json_block)
    assert sorted(r["text"] for r in page.data()["rows"] if r["prompt_id"] == "evil") == sorted(HOSTILE)
    for tag, attrs in page.tags:  # images are inline PNGs; no src, href or srcset elsewhere
        for name in ("src", "href", "srcset", "action", "data"):
            assert name not in attrs or (tag, name) == ("img", "src") and attrs[name].startswith("data:image/png;")
    assert not re.search(r"https?://|//[a-z]", _outside_data(text), re.I)
    assert "url(" not in text and "@import" not in text


def test_the_content_security_policy_allows_exactly_the_page_script_and_style(tmp_path):
    text, page, _ = inspect_html(hostile_folder(tmp_path / "s"), "-o", tmp_path / "out")
    policy = next(a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy")
    [script] = [body for attrs, body in page.scripts if not attrs]
    style = re.search(r"<style>(.*?)</style>", text, re.S).group(1)

    def digest(body):
        return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
    assert f"script-src {digest(script)};" in policy and f"style-src {digest(style)};" in policy
    assert policy.startswith("default-src 'none'; img-src data:;")


def test_no_text_keeps_every_text_out_of_the_page(tmp_path):
    text, page, _ = inspect_html(hostile_folder(tmp_path / "s"), "-o", tmp_path / "out", "--no-text")
    for needle in ("aaaaaaaaaa", "question p", "pwned", "onerror", "bold"):
        assert needle not in text
    data = page.data()
    assert data["prompts"] == {} and not any({"text", "prompt"} & set(r) for r in data["rows"])
    assert len(data["rows"]) == 16 and data["rows"][0]["score"] is not None


def test_pairs_page_sample_and_the_only_longer_count(tmp_path):
    rng = np.random.default_rng(1)
    pairs = [("a" * int(rng.integers(5, 200)), "b" * int(rng.integers(5, 200)), float(rng.normal(1, 1)), 0.0)
             for _ in range(300)]
    pairs[7] = (HOSTILE[0], HOSTILE[1], 9.0, 0.0)  # the largest margin
    path = pairs_file(tmp_path / "p.parquet", pairs)
    text, page, _ = inspect_html(path, "-o", tmp_path / "out", "--html-rows", "100")
    data = page.data()
    assert len(data["rows"]) == data["shown"] == 100 and data["of"] == 300
    assert "This page holds 100 of 300 pairs: the 10 largest margins; the 10 smallest margins" in text
    margin = np.array([c - r for _, _, c, r in pairs])
    longer = np.array([len(c) > len(r) for c, r, _, _ in pairs])
    cut = np.quantile(margin, 0.25)
    assert data["small_margin"] == pytest.approx(cut) and data["only_longer"] == int((longer & (margin <= cut)).sum())
    assert data["only_longer_shown"] == sum(r["chars_chosen"] > r["chars_rejected"] and r["margin"] <= cut
                                            for r in data["rows"])
    top = max(data["rows"], key=lambda r: r["margin"])
    assert (top["row"], top["chosen"], top["rejected"], top["margin"]) == (7, HOSTILE[0], HOSTILE[1], 9.0)
    assert data["prompts"]["p7"] == "q7"
    again, _, _ = inspect_html(path, "-o", tmp_path / "again", "--html-rows", "100")
    assert again == text  # seeded: the same rows every time


def test_html_rows_zero_writes_the_summary_only(tmp_path):
    text, page, _ = inspect_html(hostile_folder(tmp_path / "s"), "-o", tmp_path / "out", "--html-rows", "0")
    assert page.data()["rows"] == [] and "No rows embedded (--html-rows 0)" in text and "Length bias" in text


def test_scored_sample_extremes_failed_rows_then_whole_prompts():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(500), 8)  # (4000,) 8 completions per prompt
    score = rng.normal(size=4000)
    usable = rng.random(4000) > 0.05
    score[~usable] = np.nan
    rows, parts = sample.scored_rows(score, usable, groups, 400)
    assert [p["name"] for p in parts] == ["highest", "lowest", "failed", "prompts"]
    assert sum(p["rows"] for p in parts) == len(rows) <= 400 and len(rows) > 400 - 8
    ranked = np.argsort(-np.where(usable, score, -np.inf))
    assert set(ranked[:40]) <= set(rows) and set(np.flatnonzero(usable)[np.argsort(score[usable])][:40]) <= set(rows)
    assert (~usable[rows]).sum() >= 40
    drawn = int(parts[3]["says"].split()[0])  # "N prompt(s) at random, with all their completions"
    assert drawn > 20 and (np.bincount(groups[rows]) == 8).sum() >= drawn  # a drawn prompt comes whole
    assert np.array_equal(sample.scored_rows(score, usable, groups, 400)[0], rows)  # seeded


def test_embedded_json_cannot_end_its_script_element():
    text = embed_json({"x": "</script><!--<script>&amp;\u2028"})
    assert not set("<>&\u2028") & set(text) and json.loads(text) == {"x": "</script><!--<script>&amp;\u2028"}


def _outside_data(text: str) -> str:
    """The page without its inline images (base64 may hold any letters)."""
    return re.sub(r'data:image/png;base64,[A-Za-z0-9+/=]+', "", text)


def test_the_demo_reports_hold_no_demo_text(made_demo):
    """make demo inspects with --no-text (HH-RLHF red-team material): its pages hold no text either."""
    root, _ = made_demo
    demo = [json.loads(line) for line in (root / "data/demo/hh_rlhf_demo.jsonl").read_text().splitlines()]
    texts = [t[:30] for row in demo for t in row["completions"] + [row["prompt"][0]["content"]] if len(t) >= 30]
    for name in ("scored-inspect", "pairs-inspect"):
        page = (root / "demo-out" / name / "report.html").read_text()
        assert not [t for t in texts if t in page or embed_json(t)[1:-1] in page], name
        assert len(Page(page).data()["rows"]) == {"scored-inspect": 400, "pairs-inspect": 200}[name]


def test_page_size_is_bounded_by_the_row_budget_and_the_text_cut(tmp_path):
    rows = [r for g in range(40) for r in sd.rows(f"p{g}", [float(j) for j in range(5)], texts=["x" * 20_000] * 5,
                                                  input_index=g, prompt=f"q{g} " + "y" * 20_000)]
    folder = write(tmp_path / "s" / "part-0.parquet", rows).parent
    text, page, _ = inspect_html(folder, "-o", tmp_path / "out", "--html-rows", "60")
    data = page.data()
    assert 55 <= len(data["rows"]) <= 60 and len(data["prompts"]) <= 60
    assert all(r["text"].startswith("x" * TEXT_CHARS + " [… 18,000 characters cut …]") for r in data["rows"])
    assert all(p.startswith("[… 18,00") and p.endswith("y" * 100) for p in data["prompts"].values())  # the end kept
    figures = sum(len(m) for m in re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", text))
    assert len(text) - figures < (len(data["rows"]) + len(data["prompts"])) * (TEXT_CHARS + 300) + 50_000


def test_pairs_sample_takes_no_nan_or_infinite_margin_as_an_extreme():
    margin = np.r_[np.arange(100.0), np.nan, np.inf, -np.inf]  # (103,)
    chars = np.full(103, 10)
    rows, parts = sample.pair_rows(margin, chars, chars, 40)
    assert parts[0]["name"] == "largest" and parts[1]["name"] == "smallest" and parts[0]["rows"] == 4
    extremes = np.r_[np.arange(96, 100), np.arange(4)]
    assert set(extremes) <= set(rows) and len(rows) == 40
    assert sample.small_margin(margin) == np.quantile(np.arange(100.0), 0.25)


def test_combined_folder_page_has_each_models_scores_and_the_disagreement_set(tmp_path):
    import pandas as pd

    from test_combine import two_models

    a, b = two_models(tmp_path)
    run("combine", a, b, "-o", tmp_path / "ens", "--method", "mean")
    text, page, _ = inspect_html(tmp_path / "ens", "-o", tmp_path / "out")
    data = page.data()
    assert data["models"] == ["rm-a", "rm-b"] and len(data["rows"]) == 8
    frame = pd.read_parquet(tmp_path / "ens")
    want = {(r.prompt_id, r.completion_index): [None if pd.isna(x) else x for x in r.model_scores]
            for r in frame.itertuples()}
    assert {(r["prompt_id"], r["completion_index"]): r["model_scores"] for r in data["rows"]} == want
    # By hand/pandas: rank within the prompt by each model's own score, over rows scored by both.
    ok = frame[frame.status.isin(["ok", "truncated"]) & frame.score.notna()].copy()
    for m in (0, 1):
        ok[f"m{m}"] = ok.model_scores.map(lambda s, m=m: s[m])
        ok[f"r{m}"] = ok.groupby("prompt_id")[f"m{m}"].rank(ascending=False)
    disagree = set(zip(*ok[ok.r0 != ok.r1][["prompt_id", "completion_index"]].T.values))
    # p: A orders 3 > 2 > 1, B 1 > 3 > 2; q: A ties, B does not; r, s: one scored row each
    assert disagree == {("p", 0), ("p", 1), ("p", 2), ("q", 0), ("q", 1)}
    assert {(r["prompt_id"], r["completion_index"]) for r in data["rows"] if r["disagree"]} == disagree
    assert data["disagree"] == 5 and data["disagree_prompts"] == 2
    assert "Models disagree: a completion whose rank within its prompt" in text and 'id="disagree-note"' in text
    assert "<h2>Models agree</h2>" in text and "<dd>25.0% of 4</dd>" in text  # inspect.json's agreement
    run("build-pairs", tmp_path / "ens", "-o", tmp_path / "pairs.parquet")
    text, page, _ = inspect_html(tmp_path / "pairs.parquet", "-o", tmp_path / "pout")
    agreement = pq.read_table(tmp_path / "pairs.parquet").column("agreement").to_pylist()
    assert [r["agreement"] for r in page.data()["rows"]] == agreement == [0.5, 0.5]
    assert page.data()["disagree"] == 2 and "Models disagree: a pair whose agreement" in text


def test_an_ordinary_folder_has_no_model_columns(tmp_path):
    text, page, _ = inspect_html(hostile_folder(tmp_path / "s"), "-o", tmp_path / "out")
    assert "models" not in page.data() and "disagree" not in page.data()["rows"][0] and "disagree-note" not in text
