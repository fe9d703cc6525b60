"""Ray support (rmscore/ray/): `score --ray` and the Ray Data API against a local Ray cluster
started here (2 CPUs, no dashboard, every process of it on 127.0.0.1: rmscore.ray.cluster.LOOPBACK,
set before Ray is imported), with 2 actors and a tiny model.

`score --ray` must write what `rmscore score` writes: the same rows, each once, the same statuses
and reasons, scores to 1e-5, in a folder every reader takes as it is; a killed actor or a stopped
driver must not lose or repeat a row. score_dataset must give `rmscore score`'s numbers and
statuses for the same rows. Skipped without Ray (pip install 'rmscore[ray]').
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli_runner import invoke, run
from scored import REPO, TOL, keys_of, rows_of, subprocess_env

from rmscore.ray.cluster import LOOPBACK

os.environ.update(LOOPBACK)  # read when Ray is imported: its servers bind 127.0.0.1, not every interface
ray = pytest.importorskip("ray")

PROMPTS = ["What is the capital of France?", "Name a prime number.", "How do I boil an egg?", "Say hello."]
ANSWERS = ["Paris.", "Seven.", "Simmer it for nine minutes.", "Hello!", "I do not know.", ""]


def good_rows() -> list[dict]:
    rows = []
    for i in range(24):
        p = PROMPTS[i % 4]
        shape = i % 4
        if shape == 0:
            rows.append({"prompt": p, "completion": ANSWERS[i % 5]})
        elif shape == 1:
            rows.append({"prompt": p, "completions": [ANSWERS[(i + k) % 6] for k in range(3)]})
        elif shape == 2:
            rows.append({"messages": [{"role": "user", "content": p},
                                      {"role": "assistant", "content": ANSWERS[i % 5]}]})
        else:
            rows.append({"prompt": p, "chosen": ANSWERS[i % 5], "rejected": ANSWERS[(i + 2) % 5]})
    return rows


BAD_LINES = ['{"prompt": "Say hi."}', '{"prompt": "Say hi.", "completion": 5}', '[1, 2]',
             '{"prompt": "Say hi.", "completions": "not a list"}']


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_models):
    """The input (good rows of every shape with bad rows between them) and its plain score."""
    root = tmp_path_factory.mktemp("ray")
    lines = [json.dumps(row) for row in good_rows()]
    for k, bad in enumerate(BAD_LINES):
        lines.insert(3 + 5 * k, bad)
    data = root / "input.jsonl"
    data.write_text("\n".join(lines) + "\n")
    model = tiny_models["llama"]
    run("score", data, "-o", root / "plain", "-m", model)
    return root, data, model, rows_of(root / "plain")


def same(got: list[dict], want: list[dict]) -> None:
    """Every row once, the same keys, statuses and reasons; scores to 1e-5."""
    assert len(set(keys_of(got))) == len(got), "a row written twice"
    assert keys_of(got) == keys_of(want), "missing or extra rows"
    for g, w in zip(got, want):
        g, w = dict(g), dict(w)
        gs, ws = g.pop("score"), w.pop("score")
        assert (gs is None) == (ws is None) and (gs is None or abs(gs - ws) < TOL), (g, w)
        assert g == w


def arrow_rows(rows: list[dict]) -> list[dict]:
    """The rows as an Arrow table holds them: every field on every row, null where a row lacks it
    (pa.Table.from_pylist alone takes its fields from the first row)."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    return [{name: row.get(name) for name in names} for row in rows]


def ray_score(work, out: str, *extra, code: int = 0):
    root, data, model, _ = work
    result = invoke("score", data, "-o", root / out, "-m", model, "--ray", "local", "--ray-actors", 2,
                    "--window", 4, "--rows-per-part", 10, *extra)
    assert result.exit_code == code, result.output
    return result


def manifest(folder) -> dict:
    return json.loads((folder / ".rmscore" / "manifest-00000-of-00001.json").read_text())


def test_score_ray_writes_what_score_writes(cluster, work):
    root, _, _, plain = work
    ray_score(work, "ray")
    got = rows_of(root / "ray")
    same(got, plain)
    assert {r["status"] for r in got} == {"ok", "invalid_row"}
    # The manifest records the Ray job; the settings are those of a plain run.
    m, p = manifest(root / "ray"), manifest(root / "plain")
    (job,) = m["ray"]
    assert job["actors"] == 2 and job["gpus_per_actor"] == 0 and job["address"] == "local"
    assert job["job_id"] == ray.get_runtime_context().get_job_id() and job["ray_version"] == ray.__version__
    assert m["settings"] == p["settings"] and m["resolved"] == p["resolved"] and "ray" not in p
    assert len(m["parts"]) > 1
    # The same schema and provenance as a plain score's parts, up to the creation time.
    meta = [json.loads(pq.read_schema(next((root / name).glob("part-*.parquet"))).metadata[b"rmscore"])
            for name in ("ray", "plain")]
    assert meta[0].pop("created") and meta[1].pop("created") and meta[0] == meta[1]
    assert pq.read_schema(next((root / "ray").glob("part-*.parquet"))).remove_metadata() == \
        pq.read_schema(next((root / "plain").glob("part-*.parquet"))).remove_metadata()
    # The readers take the folder as any other.
    run("build-pairs", root / "ray", "-o", root / "pairs-ray.parquet")
    run("build-pairs", root / "plain", "-o", root / "pairs-plain.parquet")
    pairs = [pq.read_table(root / f"pairs-{name}.parquet").num_rows for name in ("ray", "plain")]
    assert pairs[0] == pairs[1] > 0
    run("inspect", root / "ray", "--no-text", "-o", root / "inspect-ray")
    run("merge", root / "ray", "-o", root / "merged.parquet")
    assert pq.read_table(root / "merged.parquet").num_rows == len(plain)


def test_a_killed_actor_loses_and_repeats_no_row(cluster, work, monkeypatch):
    root, _, _, plain = work
    marker = root / "killed"
    # The actor scoring window 3 dies as a killed process dies (os._exit), once: Ray restarts it
    # and sends it the windows it held.
    monkeypatch.setenv("RMSCORE_TEST_RAY_EXIT", f"3:{marker}")
    ray_score(work, "ray-killed")
    assert marker.exists(), "no actor died: the test tested nothing"
    same(rows_of(root / "ray-killed"), plain)


@pytest.mark.slow
def test_a_window_that_kills_every_actor_stops_the_run_and_a_rerun_finishes(cluster, work, monkeypatch):
    root, data, model, plain = work
    monkeypatch.setenv("RMSCORE_TEST_RAY_EXIT", "3:")  # window 3 kills its actor every time
    result = ray_score(work, "ray-poison", code=2)
    assert "a Ray actor died 4 times scoring input rows" in result.output, result.output
    saved = rows_of(root / "ray-poison")
    assert 0 < len(saved) < len(plain) and len(set(keys_of(saved))) == len(saved)
    monkeypatch.delenv("RMSCORE_TEST_RAY_EXIT")
    ray_score(work, "ray-poison")
    same(rows_of(root / "ray-poison"), plain)


def test_a_stopped_ray_run_resumes_with_or_without_ray(cluster, work, monkeypatch):
    from rmscore.errors import Interrupted
    from rmscore.ray.pool import RayPool

    root, data, model, plain = work
    windows = RayPool.windows

    def stopped_after_three(self, items, on_rows):
        for n, rows in enumerate(windows(self, items, on_rows)):
            if n == 3:
                raise Interrupted("SIGTERM")  # as the signal handler raises it, mid-run
            yield rows

    monkeypatch.setattr(RayPool, "windows", stopped_after_three)
    result = ray_score(work, "ray-stopped", code=75)
    assert "Stopped" in result.output
    monkeypatch.undo()
    saved = rows_of(root / "ray-stopped")
    assert 0 < len(saved) < len(plain) and len(set(keys_of(saved))) == len(saved)
    # Resumed without --ray (the numbers are the same: Ray settings are not settings).
    result = run("score", data, "-o", root / "ray-stopped", "-m", model, "--window", 4, "--rows-per-part", 10)
    assert "resumed" in result.output
    same(rows_of(root / "ray-stopped"), plain)


def test_score_dataset_gives_what_score_gives(cluster, work, tmp_path):
    import rmscore.ray

    _, _, model, _ = work
    rows = [{"idx": i, **row} for i, row in enumerate(good_rows()[:12])]
    rows.insert(5, {"idx": 99, "prompt": "Say hi."})  # no completion: invalid_row, kept
    rows = [{**row, "idx": i} for i, row in enumerate(arrow_rows(rows))]
    ds = ray.data.from_items(rows)
    scored = rmscore.ray.score_dataset(ds, model=model, concurrency=2, batch_size=4, index_col="idx",
                                       keep_columns=["idx"])
    got = sorted(scored.take_all(), key=lambda r: (r["input_index"], r["completion_index"]))
    # `rmscore score` on the same rows as Arrow holds them (a field a row lacks is null there).
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    run("score", tmp_path / "rows.parquet", "-o", tmp_path / "plain", "-m", model, "--keep-columns", "idx")
    want = rows_of(tmp_path / "plain")
    assert {r["status"] for r in got} == {"ok", "invalid_row"}
    same(got, want)
    assert all(r["idx"] in (r["input_index"], None) for r in got)  # a bad row keeps no column, as in score


def test_ray_api_without_index_col_says_no_global_index(cluster, work):
    from rmscore.ray import RewardScorer

    scorer = RewardScorer(work[2])
    out = scorer(pa.Table.from_pylist(arrow_rows(good_rows()[:4]))).to_pylist()
    assert len(out) == 1 + 3 + 1 + 2 and all(r["input_index"] is None for r in out)
    assert [r["completion_index"] for r in out] == [0, 0, 1, 2, 0, 0, 1]


def test_ray_refuses_shards_and_stray_options(work):
    root, data, model, _ = work
    result = invoke("score", data, "-o", root / "x", "-m", model, "--ray", "local", "--shard", "0/2")
    assert result.exit_code == 2 and "--ray scores the whole input from one process" in result.output
    assert not (root / "x").exists()  # refused before the folder was claimed for 2 shards
    result = invoke("score", data, "-o", root / "x", "-m", model, "--ray-actors", "2")
    assert result.exit_code == 2 and "apply to --ray" in result.output


def test_without_ray_one_line_and_cheap_import():
    code = ("import sys; sys.modules['ray'] = None\n"
            "import rmscore, rmscore.ray\n"
            "assert 'torch' not in sys.modules\n"
            "from rmscore.ray.cluster import require_ray\n"
            "try:\n    require_ray()\nexcept rmscore.ConfigError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "rmscore[ray] is not installed: Ray is needed here (pip install 'rmscore[ray]')"
