//! The `dtredact` command line: parses arguments and the config file, then
//! calls into the library.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use dtredact::admin::{self, Readiness};
use dtredact::cli::{Cli, Command, FilterArgs, ProxyArgs, ScanArgs, StartFrom, TailArgs};
use dtredact::config::{Config, LogConfig, LogFormat};
use dtredact::metrics::{Mode, Telemetry};
use dtredact::reload::{Reloader, SharedRedactor};
use dtredact::{filter, proxy, scan, tail};

/// mimalloc instead of the system allocator, with `--features mimalloc`:
/// the proxy allocates buffers on one worker thread and often frees them on
/// another, which glibc's allocator serializes on its arena locks. It costs
/// resident memory, so it is not the default.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code when a leak was found (`scan`, `filter --fail-on-leak`).
const EXIT_LEAK: u8 = 1;
/// Exit code for I/O and other runtime errors.
const EXIT_ERROR: u8 = 2;
/// Exit code for invalid arguments or configuration (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

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
    let log_format = cli.log_format;
    match cli.command {
        Command::Filter(args) => run_filter(args, log_format),
        Command::Scan(args) => run_scan(args),
        Command::Proxy(args) => run_proxy(args, log_format),
        Command::Tail(args) => run_tail(args, log_format),
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

/// Sets up dtredact's own log on standard error. `RUST_LOG` overrides the
/// config's filter.
fn init_logging(config: &LogConfig, format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let result = match format.unwrap_or(config.format) {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(error) = result {
        eprintln!("dtredact: failed to set up logging: {error}");
    }
}

/// Starts the admin server and the config reloader on a background thread
/// with its own runtime, for the front ends that do not run one.
fn start_background(
    admin_addr: Option<SocketAddr>,
    telemetry: &Telemetry,
    readiness: &Readiness,
    reloader: Option<Reloader>,
) -> Result<(), Failure> {
    if admin_addr.is_none() && reloader.is_none() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(runtime)?;
    if let Some(addr) = admin_addr {
        runtime
            .block_on(admin::spawn(addr, telemetry.clone(), readiness.clone()))
            .map_err(|e| {
                runtime_error(
                    anyhow::Error::new(e)
                        .context(format!("failed to start the admin server on {addr}")),
                )
            })?;
    }
    std::thread::spawn(move || {
        runtime.block_on(async move {
            if let Some(reloader) = reloader {
                reloader.spawn();
            }
            std::future::pending::<()>().await;
        });
    });
    Ok(())
}

fn runtime_error(error: anyhow::Error) -> Failure {
    runtime(error)
}

/// What every long-running mode sets up from its config: the shared
/// redactor, telemetry, readiness and, with a config file, the reloader.
struct Service {
    shared: SharedRedactor,
    telemetry: Telemetry,
    readiness: Readiness,
    reloader: Option<Reloader>,
}

impl Service {
    /// Compiles the rules and prepares telemetry for `mode`. `overrides`
    /// re-applies command-line flags to each reloaded config.
    fn start(
        config: &Config,
        path: Option<&Path>,
        mode: Mode,
        overrides: Box<dyn Fn(&mut Config) + Send + Sync>,
    ) -> Result<Service, Failure> {
        let redactor = config.build_redactor().map_err(usage)?;
        let shared: SharedRedactor = Arc::new(arc_swap::ArcSwap::from_pointee(redactor));
        let telemetry = Telemetry::new(mode, config.admin.max_leak_ids);
        telemetry
            .metrics
            .init_rules(mode, shared.load().rules().rule_names());
        let reloader = path.map(|path| {
            Reloader::new(
                path.to_path_buf(),
                config,
                overrides,
                Arc::clone(&shared),
                telemetry.metrics.clone(),
            )
        });
        Ok(Service {
            shared,
            telemetry,
            readiness: Readiness::default(),
            reloader,
        })
    }
}

fn run_filter(args: FilterArgs, log_format: Option<LogFormat>) -> Result<u8, Failure> {
    let mut config = load_config(args.common.config.as_deref())?;
    let policy = args.policy;
    let overrides = move |config: &mut Config| {
        if let Some(policy) = policy {
            config.redact.policy = policy;
        }
    };
    overrides(&mut config);
    if let Some(idle) = args.idle_flush {
        config.filter.idle_flush = idle;
    }
    if let Some(addr) = args.admin_addr {
        config.admin.addr = Some(addr);
    }
    init_logging(&config.log, log_format);
    let Service {
        shared,
        telemetry,
        readiness,
        reloader,
    } = Service::start(
        &config,
        args.common.config.as_deref(),
        Mode::Filter,
        Box::new(overrides),
    )?;
    start_background(config.admin.addr, &telemetry, &readiness, reloader)?;
    readiness.set(true);
    telemetry
        .metrics
        .ready
        .with_label_values(&["filter"])
        .set(1);

    let options = filter::FilterOptions {
        inputs: args.files,
        output: args.output,
        idle_flush: Some(config.filter.idle_flush).filter(|d| !d.is_zero()),
        read_buffer: config.filter.read_buffer,
    };
    let report = filter::run(&shared, &options, Some(&telemetry)).map_err(runtime)?;
    if args.summary {
        let mut summary = telemetry.with_inventory(|inventory| inventory.to_json());
        summary["bytes_in"] = report.bytes_in.into();
        summary["bytes_out"] = report.bytes_out.into();
        summary["interrupted"] = report.interrupted.into();
        print_summary(&summary);
    }
    if args.fail_on_leak && report.findings > 0 {
        return Ok(EXIT_LEAK);
    }
    Ok(0)
}

fn run_scan(args: ScanArgs) -> Result<u8, Failure> {
    let config = load_config(args.common.config.as_deref())?;
    let redactor = config.build_redactor().map_err(usage)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = scan::run(&redactor, &args.files, &mut out).and_then(|r| out.flush().map(|()| r));
    let report = match written {
        Ok(report) => report,
        // The reader left (`dtredact scan | head -n 1`) while a finding
        // was being written, so the scan found something: stop quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(EXIT_LEAK),
        Err(e) => {
            return Err(runtime(
                anyhow::Error::new(e).context("failed to write findings to stdout"),
            ))
        }
    };
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

fn run_proxy(args: ProxyArgs, log_format: Option<LogFormat>) -> Result<u8, Failure> {
    let mut config = load_config(args.common.config.as_deref())?;
    let policy = args.policy;
    let overrides = move |config: &mut Config| {
        if let Some(policy) = policy {
            config.redact.policy = policy;
        }
    };
    overrides(&mut config);
    if let Some(listen) = args.listen {
        config.proxy.listen = listen;
    }
    if let Some(upstream) = &args.upstream {
        let uri = dtredact::config::parse_upstream(upstream).map_err(|problem| {
            usage(anyhow::anyhow!(
                "invalid --upstream {upstream:?}: {problem}"
            ))
        })?;
        config.proxy.upstream = Some(uri);
    }
    if let Some(ca) = args.upstream_ca {
        config.proxy.upstream_ca = Some(ca);
    }
    if let Some(file) = args.upstream_token_file {
        config.proxy.upstream_token_file = Some(file);
    }
    if let Some(grace) = args.shutdown_grace {
        config.proxy.shutdown_grace = grace;
    }
    if let Some(addr) = args.admin_addr {
        config.admin.addr = Some(addr);
    }
    init_logging(&config.log, log_format);
    let mut options = config
        .proxy
        .to_options(config.filter.idle_flush)
        .map_err(usage)?;
    options.redact = !args.no_redaction;
    if args.no_redaction {
        tracing::warn!("--no-redaction: requests are forwarded uninspected");
    }
    let Service {
        shared,
        telemetry,
        readiness,
        reloader,
    } = Service::start(
        &config,
        args.common.config.as_deref(),
        Mode::Proxy,
        Box::new(overrides),
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(runtime)?;
    let admin_addr = config.admin.addr;
    runtime.block_on(async move {
        if let Some(addr) = admin_addr {
            admin::spawn(addr, telemetry.clone(), readiness.clone())
                .await
                .map_err(|e| {
                    runtime_error(
                        anyhow::Error::new(e)
                            .context(format!("failed to start the admin server on {addr}")),
                    )
                })?;
        }
        if let Some(reloader) = reloader {
            reloader.spawn();
        }
        let shutdown = proxy::Shutdown::default();
        spawn_signal_handler(shutdown.clone());
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| {
                runtime_error(
                    anyhow::Error::new(e)
                        .context(format!("failed to listen on {}", options.listen)),
                )
            })?;
        let context = proxy::ProxyContext {
            redactor: shared,
            telemetry,
            readiness,
        };
        proxy::serve_with(listener, options, context, shutdown)
            .await
            .map_err(|e| usage(anyhow::Error::new(e)))?;
        Ok(0)
    })
}

fn run_tail(args: TailArgs, log_format: Option<LogFormat>) -> Result<u8, Failure> {
    let mut config = load_config(args.common.config.as_deref())?;
    let policy = args.policy;
    let overrides = move |config: &mut Config| {
        if let Some(policy) = policy {
            config.redact.policy = policy;
        }
    };
    overrides(&mut config);
    if let Some(addr) = args.admin_addr {
        config.admin.addr = Some(addr);
    }
    init_logging(&config.log, log_format);
    let Service {
        shared,
        telemetry,
        readiness,
        reloader,
    } = Service::start(
        &config,
        args.common.config.as_deref(),
        Mode::Tail,
        Box::new(overrides),
    )?;
    start_background(config.admin.addr, &telemetry, &readiness, reloader)?;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(runtime)?;
    }
    let options = tail::TailOptions {
        patterns: args.paths,
        output: args.output,
        checkpoint: args.checkpoint,
        from: match args.from {
            StartFrom::Beginning => tail::StartFrom::Beginning,
            StartFrom::End => tail::StartFrom::End,
        },
        poll_interval: args.poll_interval,
        idle_flush: Some(config.filter.idle_flush).filter(|d| !d.is_zero()),
        read_buffer: config.filter.read_buffer,
    };
    readiness.set(true);
    telemetry.metrics.ready.with_label_values(&["tail"]).set(1);
    let result = tail::run(&shared, &options, Some(&telemetry), &stop);
    readiness.set(false);
    match result {
        Ok(_) => Ok(0),
        Err(e @ (tail::TailError::Pattern { .. } | tail::TailError::CheckpointPolicy)) => {
            Err(usage(e))
        }
        Err(e) => Err(runtime(e)),
    }
}

/// Triggers the proxy's graceful shutdown on SIGTERM or SIGINT.
fn spawn_signal_handler(shutdown: proxy::Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("failed to install SIGTERM and SIGINT handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
        }
        shutdown.trigger();
    });
}

fn print_summary(summary: &serde_json::Value) {
    let mut stderr = std::io::stderr().lock();
    let _ = serde_json::to_writer(&mut stderr, summary);
    let _ = stderr.write_all(b"\n");
}
