//! `meshctl`: the command-line client of mesh-manager. See `meshctl --help`.

use std::process::ExitCode;

use clap::Parser;
use mesh_cli::meshctl::args::Cli;
use mesh_cli::meshctl::error::Error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("meshctl: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mesh_cli::meshctl::run(cli)) {
        Ok(()) | Err(Error::OutputClosed) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, whatever the server's message held.
            let message = error
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("meshctl: {message}");
            ExitCode::FAILURE
        }
    }
}
