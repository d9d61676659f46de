//! The `tidegate` binary: see `tidegate --help`.

fn main() -> std::process::ExitCode {
    tidegate::cli::main()
}
