//! `fxpipe sql` only reads: statements that would change the lake, the session or files are
//! refused before they run.
//!
//! The lake's tables have one writer each (a job that keeps the rules: rates once per day,
//! every input row loaded or rejected, the processed table rebuilt from both). An `INSERT INTO
//! rates` from the SQL prompt would duplicate rates and make every later normalize fail, and
//! `COPY … TO` writes files anywhere. So DML, DDL, `COPY` and session statements (`SET`) are
//! refused, with a message naming the job that does change that table.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement, WriteOp};
use fxpipe::storage::Table;

/// What to do instead, for a statement that names `target` (a table or view, if any).
fn instead(target: Option<&str>) -> String {
    let table = target.and_then(|name| {
        let name = name.rsplit('.').next().unwrap_or(name);
        Table::ALL.into_iter().find(|t| t.sql_name() == name)
    });
    match table {
        Some(table) => format!(
            "The {} table is changed only by `{}`; `fxpipe vacuum` deletes the files no version needs.",
            table.sql_name(),
            table.writer()
        ),
        None => {
            let mut by_writer: Vec<(&str, Vec<&str>)> = Vec::new();
            for table in Table::ALL {
                match by_writer.iter_mut().find(|(w, _)| *w == table.writer()) {
                    Some((_, tables)) => tables.push(table.sql_name()),
                    None => by_writer.push((table.writer(), vec![table.sql_name()])),
                }
            }
            let jobs: Vec<String> = by_writer
                .iter()
                .map(|(w, tables)| format!("`{w}` ({})", tables.join(", ")))
                .collect();
            format!(
                "The lake's tables are written by {}; `fxpipe vacuum` deletes the files no version needs.",
                jobs.join(", ")
            )
        }
    }
}

const QUERIES: &str = "`fxpipe sql` only reads (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE)";

/// Why one plan node is refused, if it is.
fn refusal(node: &LogicalPlan) -> Option<String> {
    match node {
        LogicalPlan::Dml(dml) => {
            let verb = match &dml.op {
                WriteOp::Insert(InsertOp::Append) => "INSERT INTO",
                WriteOp::Insert(InsertOp::Overwrite) => "INSERT OVERWRITE",
                WriteOp::Insert(InsertOp::Replace) => "REPLACE INTO",
                WriteOp::Delete => "DELETE FROM",
                WriteOp::Update => "UPDATE",
                WriteOp::Ctas => "CREATE TABLE AS",
                WriteOp::Truncate => "TRUNCATE",
                WriteOp::MergeInto(_) => "MERGE INTO",
                other => other.name(),
            };
            let table = dml.table_name.to_string();
            Some(format!(
                "{verb} {table} refused: {QUERIES}. {}",
                instead(Some(&table))
            ))
        }
        LogicalPlan::Copy(_) => Some(format!(
            "COPY refused: {QUERIES} and writes no files. To save a result, use --format csv \
             or --format json and redirect the output (fxpipe sql \"SELECT …\" --format csv > out.csv)."
        )),
        LogicalPlan::Ddl(ddl) => {
            let (verb, name) = match ddl {
                DdlStatement::CreateExternalTable(c) => ("CREATE EXTERNAL TABLE", Some(&c.name)),
                DdlStatement::CreateMemoryTable(c) => ("CREATE TABLE", Some(&c.name)),
                DdlStatement::CreateView(c) => ("CREATE VIEW", Some(&c.name)),
                DdlStatement::DropTable(c) => ("DROP TABLE", Some(&c.name)),
                DdlStatement::DropView(c) => ("DROP VIEW", Some(&c.name)),
                other => (other.name(), None),
            };
            let name = name.map(|n| n.to_string());
            Some(format!(
                "{verb}{} refused: {QUERIES}. {}",
                name.as_deref().map(|n| format!(" {n}")).unwrap_or_default(),
                instead(name.as_deref())
            ))
        }
        LogicalPlan::Statement(statement) => {
            let verb = match statement {
                Statement::SetVariable(_) => "SET",
                Statement::ResetVariable(_) => "RESET",
                Statement::TransactionStart(_) => "BEGIN",
                Statement::TransactionEnd(_) => "COMMIT/ROLLBACK",
                Statement::Prepare(_) => "PREPARE",
                Statement::Execute(_) => "EXECUTE",
                Statement::Deallocate(_) => "DEALLOCATE",
            };
            Some(format!(
                "{verb} refused: {QUERIES}; its settings come from fxpipe's flags."
            ))
        }
        _ => None,
    }
}

/// Refuses a plan that would write (anywhere in it, subqueries and `EXPLAIN ANALYZE` included).
pub fn check(plan: &LogicalPlan) -> anyhow::Result<()> {
    let mut refused = None;
    plan.apply_with_subqueries(|node| {
        refused = refusal(node);
        Ok(if refused.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    if let Some(message) = refused {
        anyhow::bail!(message);
    }
    // DataFusion's own check too, should it learn of a kind of write the match above misses.
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| anyhow::anyhow!("refused: {QUERIES}: {e}"))
}
