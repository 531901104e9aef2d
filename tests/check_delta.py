"""Opens a Delta table with the deltalake Python package and checks its row count."""
import sys

from deltalake import DeltaTable

path, expected = sys.argv[1], int(sys.argv[2])
rows = DeltaTable(path).to_pyarrow_table().num_rows
assert rows == expected, f"{path}: {rows} rows through the Delta log, expected {expected}"
print(f"ok: {rows} rows")
