"""Checks the script `fxpipe catalog athena` printed (path in argv[1]) with an independent SQL
parser (sqlglot's Athena dialect: Hive syntax for DDL, Trino for queries), and prints what it
found as JSON for the test to assert on.

A statement sqlglot cannot parse as Athena SQL fails the check (sqlglot keeps unknown DDL as an
opaque command, which counts as a failure too). Every division must have a dividend CAST to a
decimal with at least 4 places: Trino divides decimals at the larger scale of the two operands,
so a ratio of two decimal(38,2) sums would keep only 2 places."""
import json
import sys

import sqlglot
from sqlglot import exp

text = open(sys.argv[1], encoding="utf-8").read()
statements = [s for s in sqlglot.parse(text, read="athena", error_level=sqlglot.ErrorLevel.RAISE) if s]
found = {"databases": [], "tables": [], "queries": 0, "divisions": 0}
for statement in statements:
    assert not isinstance(statement, exp.Command), f"not Athena SQL: {statement.sql()[:200]}"
    if isinstance(statement, exp.Create):
        kind = statement.args.get("kind")
        props = {p.name: p.text("value") for p in statement.find_all(exp.Property) if p.name}
        if kind == "DATABASE":
            found["databases"].append(statement.this.name)
            continue
        assert kind == "TABLE", statement.sql()
        assert statement.find(exp.ExternalProperty), "not EXTERNAL"
        assert not statement.find(exp.ColumnDef), "Delta tables take no column list"
        table = statement.this
        found["tables"].append({
            "database": table.db,
            "name": table.name,
            "location": statement.find(exp.LocationProperty).this.name,
            "table_type": props.get("table_type"),
        })
    elif isinstance(statement, (exp.Select, exp.Union)) or statement.find(exp.Select):
        found["queries"] += 1
        for division in statement.find_all(exp.Div):
            found["divisions"] += 1
            dividend = division.this
            assert isinstance(dividend, exp.Cast), f"division of an uncast dividend: {division.sql('trino')}"
            params = dividend.to.expressions
            assert dividend.to.this == exp.DataType.Type.DECIMAL and len(params) == 2, division.sql("trino")
            assert int(params[1].name) >= 4, f"the quotient keeps fewer than 4 places in Trino: {division.sql('trino')}"
        for table in statement.find_all(exp.Table):
            if table.name == "processed":
                assert table.db, f"unqualified table in {statement.sql('trino')[:200]}"
    else:
        raise AssertionError(f"unexpected statement: {statement.sql()[:200]}")
print(json.dumps(found))
