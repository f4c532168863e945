//! Command-line arguments. They live in the library so that tests can
//! parse the arguments in the Kubernetes manifests with the real parser.
//! Doc comments on flags are the `--help` text; the containers and the
//! flattened groups need none.

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, PolicyName};

#[derive(Parser, Debug)]
#[command(
    name = "dtredact",
    version,
    about = "Mask Dynatrace access tokens in log streams",
    after_help = "Exit codes: 0 success; 1 a secret was found (scan, filter --fail-on-leak); \
                  2 I/O error; 64 invalid arguments or configuration."
)]
pub struct Cli {
    /// Format of dtredact's own log on standard error; overrides the
    /// config file. `RUST_LOG` sets the level (default `info`).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy input to output with every secret masked.
    Filter(FilterArgs),
    /// Report where secrets are, as JSON lines; rewrite nothing.
    Scan(ScanArgs),
    /// Forward HTTP requests to a log sink with every secret masked.
    Proxy(ProxyArgs),
    /// Follow log files or a named pipe, like `tail -F`, and write them
    /// out with every secret masked.
    Tail(TailArgs),
    /// Validate a config file and print the effective config.
    CheckConfig {
        /// Config file (TOML).
        path: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Config file (TOML); built-in defaults without it.
    #[arg(short, long, value_name = "PATH", env = "DTREDACT_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct FilterArgs {
    /// Input files, read in order; standard input when none or `-`.
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Write output to this file instead of standard output.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Masking policy; overrides the config file.
    #[arg(long, value_enum)]
    pub policy: Option<PolicyName>,
    /// Release held-back bytes after input is idle this long (e.g. 100ms;
    /// 0s disables); overrides the config file.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_flush: Option<Duration>,
    /// Print a JSON summary of what was masked to standard error at exit.
    #[arg(long)]
    pub summary: bool,
    /// Exit with code 1 when anything was masked.
    #[arg(long)]
    pub fail_on_leak: bool,
    /// Serve /metrics, /healthz, /readyz and /leaks on this address while
    /// filtering; overrides the config file.
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<SocketAddr>,
}

#[derive(Args, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on (default 127.0.0.1:8080); overrides the config
    /// file.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Base URL of the log sink (http or https); overrides the config file.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// PEM file of the CA that signs the upstream's certificate.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// File with the token to send upstream as `Authorization`, replacing
    /// the client's; re-read when it changes.
    #[arg(long, value_name = "PATH")]
    pub upstream_token_file: Option<PathBuf>,
    /// Time in-flight requests get to finish on SIGTERM (e.g. 20s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Masking policy; overrides the config file.
    #[arg(long, value_enum)]
    pub policy: Option<PolicyName>,
    /// Serve /metrics, /healthz, /readyz and /leaks on this address;
    /// overrides the config file.
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Forward bodies, query strings and headers without inspecting them;
    /// every other step of the proxy still runs. Only for measuring what
    /// redaction costs; never use it in front of a real sink.
    #[arg(long)]
    pub no_redaction: bool,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Files to scan; standard input when none or `-`.
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print a JSON summary of the findings to standard error at exit.
    #[arg(long)]
    pub summary: bool,
}

/// Start position in a file that has no checkpoint.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The first byte.
    Beginning,
    /// The current end; only bytes written later are read.
    End,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Files, globs (quoted, such as '/var/log/app/*.log') or named pipes
    /// to follow. New files that match a glob are picked up.
    #[arg(required = true, value_name = "PATH_OR_GLOB")]
    pub paths: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Write output to this file instead of standard output.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// File that records how far each file was read, so that a restart
    /// neither skips nor repeats a line; written atomically after each
    /// write of output.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Start position in a file without a checkpoint.
    #[arg(long, value_enum, default_value = "beginning")]
    pub from: StartFrom,
    /// How often files and globs are checked for new data, rotation and new
    /// matches when no file event arrives (e.g. 250ms).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "250ms")]
    pub poll_interval: Duration,
    /// Masking policy; overrides the config file.
    #[arg(long, value_enum)]
    pub policy: Option<PolicyName>,
    /// Serve /metrics, /healthz, /readyz and /leaks on this address;
    /// overrides the config file.
    #[arg(long, value_name = "ADDR")]
    pub admin_addr: Option<SocketAddr>,
}
