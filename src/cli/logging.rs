//! Log lines on standard error: text for people, or JSON for a collector (`--log-format`).

use super::args::LogFormat;
use super::print;

/// The log filter is the same for both formats: RUST_LOG, else the -v level.
pub(crate) fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        // Cluster job progress is shown unless asked for less (RUST_LOG).
        // delta-rs logs the conflicts fxpipe resolves itself (a commit redone on a newer
        // version) as WARN and ERROR: fxpipe says what happened in its own words, and -v
        // shows delta-rs's lines.
        0 => "warn,deltalake_core=off,fxpipe::engine::progress=info,fxpipe::ingest=info,fxpipe::cli::progress=info",
        1 => "info,fxpipe=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    match format {
        // Colour codes only on a terminal: logs piped to a file or a collector stay plain text.
        LogFormat::Text => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .try_init();
        }
        // One JSON object per line; the CLI's own stderr lines (the -o summary, the final
        // error) follow suit, so every line a collector reads parses.
        LogFormat::Json => {
            print::set_json_stderr();
            let _ = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init();
        }
    }
}
