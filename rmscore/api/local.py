"""rmscore.Scorer: a reward model loaded once in this process, scoring rows held in memory.

It is a thin shell over rmscore.score.engine.Engine, which `rmscore score` and `rmscore serve` build
too: the same encode, length policy, token-budget batches and forward runners, so the numbers are
the ones `rmscore score` writes. (Not to be confused with rmscore.score.scorer.Scorer, the internal
scorer of one window of samples that the engine drives.)
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from rmscore.api import options as opts
from rmscore.config import ColumnMap
from rmscore.errors import InputError


class Scorer:
    """A reward model loaded once, scoring rows in memory.

    Args:
        model: checkpoint folder or Hub name (default: the demo reward model in data/demo-rm).
        **options: the model and batching options of `rmscore score`, named like its flags with
            underscores: model_type, revision, dtype, device, device_map, attn_implementation,
            trust_remote_code, allow_pickle, chat_template, system_prompt, bos, step_separator,
            aggregate, step_tokens, max_length, on_overflow, max_tokens_per_batch, max_batch_size,
            window, forward, batch_invariant (True: each row's numbers bit-identical however it
            is batched, as `rmscore score --batch-invariant`); a generative judge's judge_url,
            judge_model, judge_mode, concurrency, ... (docs/genrm.md). An unknown keyword raises
            ConfigError listing the valid ones.
            Under accelerate or torchrun, device "auto" is the process's own GPU (LOCAL_RANK).

    Example:
        >>> scorer = rmscore.Scorer("Skywork/Skywork-Reward-V2-Llama-3.1-8B", max_length=4096)
        >>> scorer.score([{"prompt": "2+2?", "completion": "4"}])[0]["score"]
    """

    def __init__(self, model: str | Path | None = None, **options):
        from rmscore.distributed import group
        from rmscore.distributed.env import dist_info
        from rmscore.score.engine import Engine

        with opts.in_api_words():
            model_cfg, self.batch_config = opts.configs(model, options, "rmscore.Scorer")
            # Under a data-parallel launcher (accelerate, torchrun) device auto is this process's GPU,
            # cuda:LOCAL_RANK, as TRL places its own reward models, rather than every process on cuda:0.
            device = group.local_device(dist_info(), model_cfg.device, model_cfg.device_map)
            self.model_config = model_cfg = replace(model_cfg, device=device)
            self.engine = Engine.load(model_cfg, self.batch_config)
        # The engine's scorer keeps counters and an out-of-memory budget: one call at a time.
        self._lock = threading.Lock()

    @property
    def family(self) -> str:
        """The model family scoring (see `rmscore models`), e.g. seq-cls, armorm, qwen-prm."""
        return self.engine.family

    @property
    def columns(self) -> list[str]:
        """The keys of every result dict: the Parquet columns of `rmscore score` less the echoed texts."""
        return list(self.engine.result_columns)

    @property
    def objectives(self) -> list[str]:
        """Names of a multi-objective model's `rewards` entries (ArmoRM's 19), else []."""
        return list(self.engine.model.metadata().get("objectives") or [])

    def score(self, rows, columns: dict | ColumnMap | None = None) -> list[dict]:
        """Score rows of any shape `rmscore score` reads: prompt+completion, prompt+completions (a
        list), messages, [prompt+]chosen+rejected, prompt+steps; prompts as text or message lists.

        Returns one dict per output row, in the order `rmscore score` writes them: a completions
        list gives one per completion (completion_index), a pair two (side chosen, then rejected).
        Keys: input_index, completion_index, prompt_id, side, score, num_tokens, status,
        status_detail and the family's columns (rewards/gating_output for ArmoRM; step_scores,
        score_min, ... for process reward models). A row that cannot be scored is not dropped:
        its score is None and status/status_detail say why.

        columns: names of the input columns when they differ from the standard ones, e.g.
        {"prompt": "question", "completion": "answer"} (the keys are --prompt-col etc. without -col).
        """
        with opts.in_api_words():
            rows = opts.row_list(rows)
            cmap = opts.column_map(columns)
            return [result for _, result in self._windows(rows, cmap)]

    def score_dataset(self, dataset, columns: dict | ColumnMap | None = None, progress: bool | None = None):
        """Score a datasets.Dataset; returns a Dataset with one row per output row: the input row's
        columns followed by the result columns of score().

        Rows with one completion (prompt+completion, messages, prompt+steps) keep their order and
        count. A prompt+completions row becomes one row per completion, and a chosen/rejected row
        two rows (side chosen, then rejected): their input columns repeat on each, and
        completion_index or side says which text was scored. An input column named like a result
        column (score, status, ...) is replaced by it.

        progress: a progress bar (None: on a terminal only).
        """
        from datasets import Dataset

        if not isinstance(dataset, Dataset):
            raise InputError(f"score_dataset takes a datasets.Dataset, got {type(dataset).__name__}",
                             "for a list of row dicts use score(rows); for a DatasetDict pick a split")
        cmap = opts.column_map(columns)
        plain = dataset.with_format(None)
        with opts.in_api_words():
            results = list(self._windows(plain, cmap, progress))
        positions = [index for index, _ in results]
        # One output row per input row (the usual case) needs no copy of the input's columns.
        picked = plain if positions == list(range(len(plain))) else plain.select(positions)
        clash = [c for c in self.columns if c in picked.column_names]
        if clash:
            picked = picked.remove_columns(clash)
        return _with_columns(picked, self._table([r for _, r in results]))

    def _windows(self, rows, cmap: ColumnMap, progress: bool | None = False):
        """(input position, result) for every output row, scoring `window` input rows at a time so
        memory stays bounded however many rows come in."""
        from rmscore.progress import Progress

        bar = Progress(total=len(rows), enabled=progress, quiet=progress is False)
        window = self.batch_config.window
        try:
            for start in range(0, len(rows), window):
                stop = min(start + window, len(rows))
                chunk = rows[start:stop] if isinstance(rows, list) else rows.select(range(start, stop)).to_list()
                with self._lock:
                    results = self.engine.score_rows(chunk, cmap, start)
                bar.update(len(chunk), sum(r["num_tokens"] or 0 for r in results))
                yield from ((r["input_index"], r) for r in results)
        finally:
            bar.close()

    @property
    def schema(self):
        """The result columns with the Arrow types `rmscore score` writes them with."""
        import pyarrow as pa

        from rmscore.store.output import BASE_SCHEMA

        kinds = {f.name: f for f in [*BASE_SCHEMA, *self.engine.model.output_fields()]}
        return pa.schema([kinds[name] for name in self.columns])

    def _table(self, results: list[dict]):
        import pyarrow as pa

        return pa.Table.from_pylist(results, schema=self.schema)

    def __repr__(self) -> str:
        return f"rmscore.Scorer({self.model_config.path!r}, family={self.family!r})"


def _with_columns(dataset, table):
    from datasets import Dataset, concatenate_datasets

    return concatenate_datasets([dataset, Dataset(table)], axis=1)
