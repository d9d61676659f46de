//! `tidegate validate`: checks an agent config without running it.

use std::process::ExitCode;

use super::agent::{ConfigArgs, EXIT_CONFIG, report};

/// `tidegate validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

/// Prints the resolved topology and exits 0, or lists every problem (key and line) and exits 78.
pub fn run(args: ValidateArgs) -> ExitCode {
    match args.config.load() {
        Ok(cfg) => {
            print!("{}", cfg.topology());
            println!("config OK");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            report(&errors);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
