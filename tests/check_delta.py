"""Opens a Delta table with the deltalake Python package and checks its row count; with
`--plain-too`, also reads every Parquet file in the folder the way a plain-Parquet reader
(Athena over Hive folders, DuckDB read_parquet) would, and checks it agrees."""
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
from deltalake import DeltaTable

path, expected = sys.argv[1], int(sys.argv[2])
options = None
if path.startswith("s3://"):
    # An independent S3 client: the endpoint and credentials of the environment (moto in the tests).
    options = {
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": os.environ["AWS_REGION"],
        "AWS_ALLOW_HTTP": "true",
    }
rows = DeltaTable(path, storage_options=options).to_pyarrow_table().num_rows
assert rows == expected, f"{path}: {rows} rows through the Delta log, expected {expected}"
if "--plain-too" in sys.argv[3:]:
    if options:
        from urllib.parse import urlparse

        from pyarrow import fs

        endpoint = urlparse(options["AWS_ENDPOINT_URL"])
        s3 = fs.S3FileSystem(
            access_key=options["AWS_ACCESS_KEY_ID"],
            secret_key=options["AWS_SECRET_ACCESS_KEY"],
            region=options["AWS_REGION"],
            endpoint_override=endpoint.netloc,
            scheme=endpoint.scheme,
        )
        listed = s3.get_file_info(fs.FileSelector(path[len("s3://"):], recursive=True))
        files = [
            f.path for f in listed
            if f.path.endswith(".parquet") and "/_delta_log/" not in f.path
        ]
        plain = sum(pq.ParquetFile(s3.open_input_file(f)).metadata.num_rows for f in files)
    else:
        files = [f for f in Path(path).rglob("*.parquet") if "_delta_log" not in f.parts]
        plain = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    assert plain == expected, f"{path}: {plain} rows in {len(files)} Parquet files, expected {expected}"
print(f"ok: {rows} rows")
# Skip interpreter teardown: deltalake's runtime threads sometimes abort there ("terminate
# called without an active exception") after every check has passed.
sys.stdout.flush()
os._exit(0)
