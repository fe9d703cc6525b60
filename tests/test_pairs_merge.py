"""build-pairs' final merge of the sorted bucket parts (rmscore/pairs/build.py _merged): the same
rows in the same order as sorting everything at once, whatever the batch size, with prompts whose
pairs straddle batches and equal prompt positions in several parts (two input files)."""

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rmscore.pairs.build import ORDER_KEY, _merged

SCHEMA = pa.schema([("_first_input", pa.int64()), ("_first_completion", pa.int32()), ("prompt_id", pa.string()),
                    ("_rank", pa.int32()), ("text", pa.string())])


def parts(tmp_path, seed: int, count: int, group: int) -> tuple[list, list[dict]]:
    rng = random.Random(seed)
    rows = []
    for prompt in range(60):
        # Positions repeat (rows of two input files) with a few completion indices.
        position = (rng.randint(0, 15), rng.randint(0, 2))
        rows += [{"_first_input": position[0], "_first_completion": position[1], "prompt_id": f"p{prompt:03d}",
                  "_rank": rank, "text": f"{prompt}-{rank}"} for rank in range(rng.choice([0, 1, 3, 9]))]
    by_part: dict[int, list] = {}
    for row in rows:  # a prompt's pairs are all in one part, as with hash buckets
        by_part.setdefault(hash(row["prompt_id"]) % count, []).append(row)
    paths = []
    for i, chunk in by_part.items():
        paths.append(tmp_path / f"part-{i}.parquet")
        table = pa.Table.from_pylist(chunk, schema=SCHEMA).sort_by([(k, "ascending") for k in ORDER_KEY])
        pq.write_table(table, paths[-1], row_group_size=group)
    expected = pa.Table.from_pylist(rows, schema=SCHEMA).sort_by([(k, "ascending") for k in ORDER_KEY]).to_pylist()
    return paths, expected


@pytest.mark.parametrize("seed,count,group", [(0, 1, 2), (1, 4, 1), (2, 7, 3), (3, 16, 5), (4, 3, 1000)])
def test_merge_equals_one_sort(tmp_path, seed, count, group):
    paths, expected = parts(tmp_path, seed, count, group)
    got = [row for table in _merged(paths) for row in table.to_pylist()]
    assert got == expected
