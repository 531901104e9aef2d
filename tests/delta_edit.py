"""Edits a local Delta table the way another writer would, with the deltalake Python package
(tests/incremental.rs):

  delta_edit.py delete TABLE PREDICATE    deletes the matching rows (remove + add actions
                                          written by delta-rs's Python writer, not fxpipe)
  delta_edit.py drop-column TABLE COLUMN  rewrites the table without COLUMN, as a lake written
                                          by an fxpipe that did not have the column yet
"""
import sys

from deltalake import DeltaTable, write_deltalake

action, path, argument = sys.argv[1], sys.argv[2], sys.argv[3]
table = DeltaTable(path)
if action == "delete":
    metrics = table.delete(argument)
    print(metrics["num_deleted_rows"])
elif action == "drop-column":
    data = table.to_pyarrow_table()
    data = data.drop_columns([argument])
    write_deltalake(
        path,
        data,
        mode="overwrite",
        schema_mode="overwrite",
        partition_by=table.metadata().partition_columns or None,
    )
    print(data.num_rows)
else:
    sys.exit(f"unknown action {action}")
