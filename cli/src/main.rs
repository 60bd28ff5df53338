//! `jrctl`: parse the command line, run it, and turn any error into one
//! line on stderr and a non-zero exit status.

use clap::error::ErrorKind;
use jrctl::args::ConfigFileError;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match jrctl::args::load_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ConfigFileError::Cli(e))
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) =>
        {
            e.exit()
        }
        Err(ConfigFileError::Cli(e)) => {
            eprintln!("jrctl: {}", jrctl::usage_line(&e.to_string()));
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("jrctl: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jrctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(jrctl::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jrctl: {}", jrctl::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
