//! The `fxpipe` command: a thin edge over the library. Argument parsing, printing and exit
//! codes live in `cli/`; everything else is the `fxpipe` library.

#![allow(clippy::result_large_err)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
