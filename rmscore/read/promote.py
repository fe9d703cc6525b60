"""One type rule for kept columns (--keep-columns) and --id-col values, the same on every path.

A column's type is the promotion of its values' types: null fits anything; an int meeting a float
becomes a float, unless one of the ints is beyond 2^53 (a float cannot hold it exactly); any other
disagreement (int and string, bool and int, a list and a number) makes the column a string. Nested
values are promoted by pyarrow's permissive unification (null inside a list, int -> float inside,
struct fields merged), and also become a string where that fails.

The writer applies the rule window by window (a wider type starts a new part file), a resumed run
starts from the widest type of the finished parts, and before a shard calls itself complete every
part of the folder is rewritten to the folder's one promoted schema (rmscore/store/conform.py), which
`rmscore merge` writes too. So the stored value never depends on where in the input a row was, and
any Parquet reader opens the folder.

A value becomes text by one function, to_text(): a string stays itself, anything else is written
as JSON, with whole-number floats as integers (2.0 and 2 are both "2") and null struct fields left
out (Arrow does not tell a missing field from a null one), so the text is the same whether the
value went straight to string or through an int or float part first.
"""

from __future__ import annotations

import functools
import json

import pyarrow as pa

EXACT_INT = 2**53  # ints beyond this lose digits as a float
CONVERSION = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError, ValueError)


def to_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(_plain(value), ensure_ascii=False, default=str)


def _plain(value):
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def promote(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    try:
        unified = pa.unify_schemas([pa.schema([("v", a)]), pa.schema([("v", b)])], promote_options="permissive")
    except CONVERSION:
        return pa.string()
    return unified.field("v").type


def values_type(values: list) -> pa.DataType:
    """The promoted type of Python values (pyarrow's own inference when they already agree)."""
    try:
        kind = pa.array(values).type
    except CONVERSION:
        kind = functools.reduce(promote, map(_value_type, values), pa.null())
    return exact(kind, values)


def widen(kind: pa.DataType, values: list) -> pa.DataType:
    """`kind` widened to hold `values` too, every value exactly."""
    return exact(promote(kind, values_type(values)), values)


def exact(kind: pa.DataType, values: list) -> pa.DataType:
    """`kind`, or text where it is a float and an int among `values` is beyond 2^53."""
    inexact = any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > EXACT_INT for v in values)
    return pa.string() if pa.types.is_floating(kind) and inexact else kind


def _value_type(value) -> pa.DataType:
    try:
        return pa.array([value]).type
    except CONVERSION:
        return pa.string()  # an int beyond 64 bits, an object pyarrow cannot store: kept as text


def fit_values(values: list, kind: pa.DataType) -> list:
    """Python values ready for pa.array(values, type=kind)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return [to_text(v) for v in values]
    return values


def unify(schemas: list[pa.Schema]) -> pa.Schema:
    """The fields of all schemas (first-seen order), each promoted over every schema that has it;
    the first schema's metadata."""
    types: dict[str, pa.DataType] = {}
    for schema in schemas:
        for field in schema:
            types[field.name] = promote(types.get(field.name, pa.null()), field.type)
    return pa.schema([(name, kind) for name, kind in types.items()], metadata=schemas[0].metadata if schemas else None)


def fit_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns, each promoted by the rule (missing ones all null)."""
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table[field.name]
        if column.type == field.type:
            columns.append(column)
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type) or pa.types.is_null(column.type):
            columns.append(pa.array(fit_values(column.to_pylist(), field.type), type=field.type))
        else:
            try:
                columns.append(column.cast(field.type))
            except CONVERSION:  # a struct gaining fields, say: rebuild from the values
                columns.append(pa.array(column.to_pylist(), type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)
