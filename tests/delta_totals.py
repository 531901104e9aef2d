"""Prints a Delta table's row count and the exact sums of some decimal columns, read with the
deltalake Python package (a reader independent of fxpipe): `ROWS SUM1 SUM2 ...`, each sum
as a plain decimal with its trailing zeros stripped (so `12.50` and `12.5000` agree).

Usage: delta_totals.py TABLE_URL [COLUMN ...]; on s3:// the endpoint and credentials come
from the environment (moto in the tests)."""
import os
import sys
from decimal import Decimal

import pyarrow.compute as pc
from deltalake import DeltaTable

path, columns = sys.argv[1], sys.argv[2:]
options = None
if path.startswith("s3://"):
    options = {
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": os.environ["AWS_REGION"],
        "AWS_ALLOW_HTTP": "true",
    }
table = DeltaTable(path, storage_options=options).to_pyarrow_table()


def plain(value):
    if value is None:
        return "0"
    text = format(Decimal(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


print(" ".join([str(table.num_rows)] + [plain(pc.sum(table[c]).as_py()) for c in columns]))
# Skip interpreter teardown: deltalake's runtime threads sometimes abort there after the
# answer is out (see check_delta.py).
sys.stdout.flush()
os._exit(0)
