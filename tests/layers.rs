//! The dependency rule of `src/lib.rs`, checked on the source: the engine (where plans run)
//! imports nothing from the jobs that use it. Jobs reach the engine with their plan nodes
//! through `fxpipe::extensions()`; an `engine/` file naming `jobs` would turn that arrow
//! around again (issue 25).

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_engine_imports_nothing_from_the_jobs() {
    let engine = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let mut files = Vec::new();
    rust_files(&engine, &mut files);
    assert!(
        files.len() > 5,
        "no engine sources under {}",
        engine.display()
    );
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("crate::jobs")
                || code.contains("fxpipe::jobs")
                || code.contains("jobs::")
            {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the engine names jobs:\n{}",
        found.join("\n")
    );
}
