"""`rmscore merge`: the shard folder of `rmscore score` into one Parquet file."""

from __future__ import annotations

from typing import Annotated

import typer

from rmscore.cli.app import command, echo


@command("merge")
def merge(
    folder: Annotated[str, typer.Argument(help="The -o folder of `rmscore score` (every shard's parts).",
                                          show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="The merged Parquet file (outside FOLDER).",
                                        show_default=False)],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
):
    """Check that every shard finished, then write one Parquet file: rows in input order, each
    row key (input_index, completion_index) once.

    Names the shards that have not finished and exits non-zero if any is missing. Readers that
    take a folder (pyarrow.dataset, datasets, rmscore build-pairs) can also use FOLDER directly.

    Examples (after `make demo`, which scored the demo data into demo-out/scored):

    \b
      rmscore merge demo-out/scored -o demo-out/scored.parquet --overwrite
    """
    from rmscore.store.merge import merge as merge_folder

    s = merge_folder(folder, output, overwrite)
    echo(f"Merged {s.rows:,} rows from {s.parts:,} parts of {s.shards} shards into {s.output}"
         + (f" ({s.duplicates:,} duplicate rows dropped)." if s.duplicates else "."))
