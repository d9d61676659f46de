//! `tidegate convert --flume-conf F --name AGENT`: prints the tidegate TOML equivalent of a
//! Flume agent config, with the import's warnings as a comment at the top. On failure it prints
//! every problem (key and line) to stderr and exits with 78 (`EX_CONFIG`, as `validate` does).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::agent::flume::{self, ImportOptions};

/// Exit status for a config that cannot be converted (sysexits' `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// Arguments of `tidegate convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The Flume properties file.
    #[arg(long, value_name = "FILE")]
    pub flume_conf: PathBuf,
    /// The agent to convert (Flume's `-n`).
    #[arg(long, value_name = "AGENT")]
    pub name: String,
    /// A Java system property for `${sys:NAME}` references, as `flume-ng -DNAME=VALUE` set it.
    #[arg(short = 'D', long = "define", value_name = "NAME=VALUE", value_parser = parse_define)]
    pub define: Vec<(String, String)>,
}

fn parse_define(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

/// The text `convert` prints for a successful import: warnings as comments, then the TOML.
pub fn render(import: &flume::FlumeImport, source: &str, agent: &str) -> String {
    let mut out =
        format!("# tidegate agent config converted from Flume agent `{agent}` of {source}\n");
    if import.warnings.is_empty() {
        out.push_str("# no warnings\n");
    } else {
        out.push_str(&format!("# {} warning(s):\n", import.warnings.len()));
        for w in &import.warnings {
            for (i, line) in w.to_string().lines().enumerate() {
                out.push_str(if i == 0 { "# - " } else { "#   " });
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.push('\n');
    out.push_str(
        &toml::to_string(&import.table).unwrap_or_else(|e| format!("# cannot print: {e}\n")),
    );
    out
}

/// Runs `tidegate convert`.
pub fn run(args: ConvertArgs) -> ExitCode {
    let bytes = match std::fs::read(&args.flume_conf) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.flume_conf.display());
            return ExitCode::FAILURE;
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        eprintln!("error: {} is not UTF-8 text", args.flume_conf.display());
        return ExitCode::from(EXIT_CONFIG);
    };
    let opts = ImportOptions {
        system_properties: args.define.into_iter().collect::<BTreeMap<_, _>>(),
        ..ImportOptions::default()
    };
    let file = args.flume_conf.display().to_string();
    match flume::to_toml_with(&text, &args.name, &opts) {
        Ok(import) => {
            print!("{}", render(&import, &file, &args.name));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: {file}: agent `{}` cannot be converted ({} problem(s)):",
                args.name,
                e.errors.len()
            );
            for d in &e.errors {
                eprintln!("  {d}");
            }
            if !e.warnings.is_empty() {
                eprintln!("warnings:");
                for w in &e.warnings {
                    eprintln!("  {w}");
                }
            }
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
