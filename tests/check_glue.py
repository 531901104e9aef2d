"""Prints, as JSON, what a Glue Data Catalog holds for one database (argv[1]): every table's
type, parameters, location, serde path, partition keys and number of versions. The endpoint,
region and credentials come from the environment (AWS_ENDPOINT_URL etc.), as for fxpipe.
With `--list-databases`, prints the names of the databases of the region instead."""
import json
import os
import sys

import boto3

glue = boto3.client("glue", region_name=os.environ["AWS_REGION"], endpoint_url=os.environ["AWS_ENDPOINT_URL"])
if sys.argv[1] == "--list-databases":
    print(json.dumps([d["Name"] for d in glue.get_databases()["DatabaseList"]]))
    sys.exit(0)
database = sys.argv[1]
tables = []
for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
    tables.extend(page["TableList"])
found = []
for table in tables:
    versions = glue.get_table_versions(DatabaseName=database, TableName=table["Name"])["TableVersions"]
    storage = table.get("StorageDescriptor", {})
    found.append({
        "name": table["Name"],
        "table_type": table.get("TableType"),
        "parameters": table.get("Parameters", {}),
        "location": storage.get("Location"),
        "serde_path": storage.get("SerdeInfo", {}).get("Parameters", {}).get("path"),
        "columns": len(storage.get("Columns", [])),
        "partition_keys": len(table.get("PartitionKeys", [])),
        "versions": len(versions),
    })
print(json.dumps({"database": glue.get_database(Name=database)["Database"]["Name"], "tables": found}))
