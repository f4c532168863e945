//! The `dtredact` command line: parses arguments and the config file, then
//! calls into the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use dtredact::config::{Config, PolicyName};
use dtredact::{filter, scan};

/// Exit code when a leak was found (`scan`, `filter --fail-on-leak`).
const EXIT_LEAK: u8 = 1;
/// Exit code for I/O and other runtime errors.
const EXIT_ERROR: u8 = 2;
/// Exit code for invalid arguments or configuration (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "dtredact",
    version,
    about = "Mask Dynatrace access tokens in log streams",
    after_help = "Exit codes: 0 success; 1 a secret was found (scan, filter --fail-on-leak); \
                  2 I/O error; 64 invalid arguments or configuration."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Copy input to output with every secret masked.
    Filter(FilterArgs),
    /// Report where secrets are, as JSON lines; rewrite nothing.
    Scan(ScanArgs),
    /// Validate a config file and print the effective config.
    CheckConfig {
        /// Config file (TOML).
        path: PathBuf,
    },
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// Config file (TOML); built-in defaults without it.
    #[arg(short, long, value_name = "PATH", env = "DTREDACT_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct FilterArgs {
    /// Input files, read in order; standard input when none or `-`.
    files: Vec<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
    /// Write output to this file instead of standard output.
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Masking policy; overrides the config file.
    #[arg(long, value_enum)]
    policy: Option<PolicyName>,
    /// Release held-back bytes after input is idle this long (e.g. 100ms;
    /// 0s disables); overrides the config file.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    idle_flush: Option<Duration>,
    /// Print a JSON summary of what was masked to standard error at exit.
    #[arg(long)]
    summary: bool,
    /// Exit with code 1 when anything was masked.
    #[arg(long)]
    fail_on_leak: bool,
}

#[derive(Args, Debug)]
struct ScanArgs {
    /// Files to scan; standard input when none or `-`.
    files: Vec<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
    /// Print a JSON summary of the findings to standard error at exit.
    #[arg(long)]
    summary: bool,
}

/// An error with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        error: error.into(),
    }
}

fn runtime(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_ERROR,
        error: error.into(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("dtredact: error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Filter(args) => run_filter(args),
        Command::Scan(args) => run_scan(args),
        Command::CheckConfig { path } => {
            let config = load_config(Some(&path))?;
            config.build_redactor().map_err(usage)?;
            print!("{}", config.to_effective_toml());
            Ok(0)
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, Failure> {
    match path {
        Some(path) => Config::load(path).map_err(usage),
        None => Ok(Config::default()),
    }
}

fn run_filter(args: FilterArgs) -> Result<u8, Failure> {
    let mut config = load_config(args.common.config.as_deref())?;
    if let Some(policy) = args.policy {
        config.redact.policy = policy;
    }
    if let Some(idle) = args.idle_flush {
        config.filter.idle_flush = idle;
    }
    let redactor = config.build_redactor().map_err(usage)?;
    let options = filter::FilterOptions {
        inputs: args.files,
        output: args.output,
        idle_flush: Some(config.filter.idle_flush).filter(|d| !d.is_zero()),
        read_buffer: config.filter.read_buffer,
    };
    let report = filter::run(&redactor, &options).map_err(runtime)?;
    if args.summary {
        let mut summary = report.inventory.to_json();
        summary["bytes_in"] = report.bytes_in.into();
        summary["bytes_out"] = report.bytes_out.into();
        summary["interrupted"] = report.interrupted.into();
        print_summary(&summary);
    }
    if args.fail_on_leak && report.inventory.total() > 0 {
        return Ok(EXIT_LEAK);
    }
    Ok(0)
}

fn run_scan(args: ScanArgs) -> Result<u8, Failure> {
    let config = load_config(args.common.config.as_deref())?;
    let redactor = config.build_redactor().map_err(usage)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let report = scan::run(&redactor, &args.files, &mut out)
        .and_then(|r| out.flush().map(|()| r))
        .context("failed to write findings to stdout")
        .map_err(runtime)?;
    for (file, error) in &report.errors {
        eprintln!("dtredact: error: failed to read {file}: {error}");
    }
    if args.summary {
        let mut summary = report.inventory.to_json();
        summary["bytes_in"] = report.bytes_in.into();
        print_summary(&summary);
    }
    if !report.errors.is_empty() {
        return Ok(EXIT_ERROR);
    }
    Ok(if report.inventory.total() > 0 {
        EXIT_LEAK
    } else {
        0
    })
}

fn print_summary(summary: &serde_json::Value) {
    let mut stderr = std::io::stderr().lock();
    let _ = serde_json::to_writer(&mut stderr, summary);
    let _ = stderr.write_all(b"\n");
}
