"""Prints a Parquet file as pyarrow (a reader independent of fxpipe) sees it: one line per
column, `NAME TYPE`, then one line per row, its values joined by `|`, decimals as their exact
text (`Decimal('41194.26')` prints 41194.26), NULL as an empty field.

Usage: read_parquet.py FILE"""
import sys

import pyarrow.parquet as pq

table = pq.read_table(sys.argv[1])
for field in table.schema:
    print(field.name, field.type)
for row in table.to_pylist():
    print("|".join("" if value is None else str(value) for value in row.values()))
