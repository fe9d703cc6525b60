"""The Ray Data API: score a ray.data.Dataset with Dataset.map_batches over an actor pool.

    import ray, rmscore.ray

    ds = ray.data.read_json("s3://bucket/completions/")
    scored = rmscore.ray.score_dataset(ds, model="Skywork/Skywork-Reward-V2-Llama-3.1-8B",
                                       concurrency=8, num_gpus=1, max_length=4096)
    scored.write_parquet("s3://bucket/scored/")

or, for map_batches options score_dataset does not take:

    ds.map_batches(rmscore.ray.RewardScorer, fn_constructor_kwargs={"model": "...", "max_length": 4096},
                   batch_format="pyarrow", concurrency=8, num_gpus=1)

Each actor loads the model once through the same Engine as `rmscore score`; each batch is read
row by row by the same input contract (a row's shape is its own: prompt+completion,
prompt+completions, messages, chosen/rejected, prompt+steps), scored with token-budgeted batches
and prompt reuse inside the actor, and comes back with the columns and statuses `rmscore score`
writes: one output row per completion, so a batch can grow.
"""

from __future__ import annotations

from pathlib import Path

from rmscore.errors import InputError

DEFAULT_BATCH_ROWS = 256  # input rows per map_batches batch


class RewardScorer:
    """A callable class for Dataset.map_batches: one reward model per Ray actor.

    Args:
        model: checkpoint folder or Hub name (default: the demo reward model).
        columns: input column names when they differ from the standard ones, e.g.
            {"prompt": "question", "completion": "answer"} (as rmscore.Scorer.score's columns).
        index_col: an input column holding each row's own integer index (or id); it becomes the
            output's input_index. Ray Data has no global row index, so without it input_index is
            null (never a number that merely looks global); prompt_id and completion_index still
            identify each output row.
        keep_columns: input columns copied to every output row of their input row (as
            `score --keep-columns`).
        **options: the model and batching options of rmscore.Scorer (max_length, dtype,
            max_tokens_per_batch, window, forward, batch_invariant, ...). device "auto" is the
            actor's GPU when Ray gave it one (num_gpus), else the CPU.

    __call__(batch) takes a pyarrow Table (batch_format="pyarrow": nested lists of messages arrive
    intact), a pandas DataFrame or a dict of columns, and returns a pyarrow Table.
    """

    def __init__(self, model: str | Path | None = None, columns: dict | None = None, index_col: str | None = None,
                 keep_columns: list[str] | tuple[str, ...] = (), **options):
        from rmscore.api import options as opts
        from rmscore.ray.cluster import actor_device
        from rmscore.read.contract import Reading
        from rmscore.score.engine import Engine
        from rmscore.store.output import BASE_SCHEMA, check_keep_columns

        with opts.in_api_words():
            model_cfg, batch_cfg = opts.configs(model, options, "rmscore.ray.RewardScorer")
            model_cfg.device = actor_device(model_cfg.device)
            self.engine = Engine.load(model_cfg, batch_cfg)
            self.keep = tuple(opts.listed(keep_columns, "keep_columns", "a list of column names")) if keep_columns \
                else ()
            self.facts = self.engine.facts()
            names = [f.name for f in [*BASE_SCHEMA, *self.facts.output_fields]]
            check_keep_columns(list(self.keep), names)
        self.index_col = index_col
        self.reading = Reading(opts.column_map(columns), keep=self.keep, reads_steps=self.facts.reads_steps)
        self.schema = [*BASE_SCHEMA, *self.facts.output_fields]

    def __call__(self, batch):
        import pyarrow as pa

        from rmscore.read.layout import row_samples
        from rmscore.read.rows import RawRow

        table = _table(batch)
        rows = table.to_pylist()
        samples = []
        for i, data in enumerate(rows):
            samples += row_samples(RawRow(i, data), self.reading)[1]  # i: the row within this batch
        out = self.engine.score_samples(samples)
        ids = self._indices(rows)
        for row in out:
            row["input_index"] = ids[row["input_index"]]
        columns = {f.name: pa.array([r.get(f.name) for r in out], type=f.type) for f in self.schema}
        for name in self.keep:
            kind = table.schema.field(name).type if name in table.column_names else pa.null()
            columns[name] = pa.array([r.get(name) for r in out], type=kind)
        return pa.table(columns)

    def _indices(self, rows: list[dict]) -> list:
        if self.index_col is None:
            return [None] * len(rows)
        values = [row.get(self.index_col) if isinstance(row, dict) else None for row in rows]
        bad = next((v for v in values if not (isinstance(v, int) and not isinstance(v, bool))), "none")
        if bad != "none":
            raise InputError(f"index_col {self.index_col!r} must hold an integer on every row, found {bad!r}",
                             "name a column of integer ids, or leave index_col out (input_index is then null)")
        return values


def score_dataset(ds, model: str | Path | None = None, *, concurrency: int = 1, num_gpus: float | None = None,
                  batch_size: int = DEFAULT_BATCH_ROWS, columns: dict | None = None, index_col: str | None = None,
                  keep_columns: list[str] | tuple[str, ...] = (), **options):
    """ds.map_batches(RewardScorer, ...): the scored Dataset, lazily (write it, or iterate it).

    concurrency: actors, each loading the model once. num_gpus: GPUs per actor; None: 1 when the
    cluster has GPUs, else 0. batch_size: input rows per batch (a row's completions always stay in
    one batch, so prompt reuse works; flat rows of one prompt may be split across batches, which
    costs reuse, never changes a number). The other arguments are RewardScorer's; options are
    checked here, before any actor starts."""
    from rmscore.api import options as opts
    from rmscore.ray.cluster import cluster_gpus, require_ray

    require_ray()
    with opts.in_api_words():
        opts.configs(model, options, "rmscore.ray.score_dataset")  # a bad option fails here, not in every actor
        opts.column_map(columns)
    if num_gpus is None:
        num_gpus = 1.0 if cluster_gpus() else 0.0
    kwargs = {"model": None if model is None else str(model), "columns": columns, "index_col": index_col,
              "keep_columns": tuple(keep_columns), **options}
    return ds.map_batches(RewardScorer, fn_constructor_kwargs=kwargs, batch_format="pyarrow", batch_size=batch_size,
                          concurrency=concurrency, num_gpus=num_gpus)


def _table(batch):
    """A batch as a pyarrow Table, whichever batch_format map_batches was given."""
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, dict):  # batch_format "numpy": nested values arrive as object arrays
        return pa.Table.from_pylist([dict(zip(batch, values)) for values in zip(*(_plain(v) for v in batch.values()))])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(batch, pd.DataFrame):
        return pa.Table.from_pandas(batch, preserve_index=False)
    raise InputError(f"RewardScorer takes a pyarrow Table, a pandas DataFrame or a dict of columns, got "
                     f"{type(batch).__name__}", 'pass batch_format="pyarrow" to map_batches')


def _plain(values) -> list:
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    return [v.tolist() if hasattr(v, "tolist") else v for v in values]
