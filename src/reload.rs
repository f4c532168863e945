//! Hot reload: on SIGHUP, and when the config file or a known-secret file
//! changes (a Kubernetes ConfigMap or Secret update swaps a symlink), the
//! config is parsed, validated and compiled again, then swapped in whole.
//! Streams already running keep the rules they started with; an invalid
//! config is rejected, logged and counted, and the old rules stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::Redactor;

/// The redactor in force, swapped whole on reload.
pub type SharedRedactor = Arc<arc_swap::ArcSwap<Redactor>>;

/// How often files are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Reloads one config file into a shared redactor.
pub struct Reloader {
    path: PathBuf,
    /// Applies command-line overrides to each newly parsed config.
    overrides: Box<dyn Fn(&mut Config) + Send + Sync>,
    shared: SharedRedactor,
    metrics: Metrics,
    stamps: Vec<Stamp>,
}

/// Identity of one file's contents: path, inode, size and modification
/// time. A changed stamp means the file may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Reloader {
    /// Creates a reloader for `path`, whose current config is `config`.
    pub fn new(
        path: PathBuf,
        config: &Config,
        overrides: Box<dyn Fn(&mut Config) + Send + Sync>,
        shared: SharedRedactor,
        metrics: Metrics,
    ) -> Reloader {
        let stamps = stamps(&path, config);
        Reloader {
            path,
            overrides,
            shared,
            metrics,
            stamps,
        }
    }

    /// Parses, validates and compiles the config again and swaps it in.
    ///
    /// # Errors
    ///
    /// The new config is invalid; the old rules stay in force.
    pub fn reload(&mut self) -> Result<(), ConfigError> {
        let result = Config::load(&self.path).and_then(|mut config| {
            (self.overrides)(&mut config);
            let redactor = config.build_redactor()?;
            Ok((config, redactor))
        });
        match result {
            Ok((config, redactor)) => {
                self.shared.store(Arc::new(redactor));
                self.stamps = stamps(&self.path, &config);
                self.metrics.reloads.with_label_values(&["success"]).inc();
                tracing::info!(config = %self.path.display(), "config reloaded");
                Ok(())
            }
            Err(error) => {
                // Remember the stamps anyway, so that a broken file is
                // reported once, not every second.
                if let Ok(config) = Config::load(&self.path) {
                    self.stamps = stamps(&self.path, &config);
                } else {
                    self.stamps = vec![stamp(&self.path)];
                }
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                tracing::error!(%error, config = %self.path.display(), "config reload rejected; the previous rules stay in force");
                Err(error)
            }
        }
    }

    /// Returns whether the config file or a known-secret file changed
    /// since the last load.
    pub fn changed(&self) -> bool {
        self.stamps.iter().any(|s| stamp(&s.path) != *s)
            || Config::load(&self.path)
                .map(|c| stamps(&self.path, &c).len() != self.stamps.len())
                .unwrap_or(false)
    }

    /// Reloads on SIGHUP and whenever a file changed, until the runtime
    /// stops.
    pub fn spawn(mut self) {
        tokio::spawn(async move {
            let mut hangup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::error!(%error, "failed to install the SIGHUP handler; reload on file change only");
                    None
                }
            };
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            loop {
                let hup = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = hup => {
                        tracing::info!("SIGHUP received; reloading the config");
                        let _ = self.reload();
                    }
                    _ = tick.tick() => {
                        if self.changed() {
                            tracing::info!(config = %self.path.display(), "config or secret file changed; reloading");
                            let _ = self.reload();
                        }
                    }
                }
            }
        });
    }
}

/// Stamps of the config file and of every known-secret file it names.
fn stamps(path: &Path, config: &Config) -> Vec<Stamp> {
    let mut out = vec![stamp(path)];
    for secret in &config.known_secrets {
        out.push(stamp(&secret.path));
        if let Ok(entries) = std::fs::read_dir(&secret.path) {
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            out.extend(files.iter().map(|p| stamp(p)));
        }
    }
    out
}

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(meta) => Stamp {
            path: path.to_path_buf(),
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        },
        Err(_) => Stamp {
            path: path.to_path_buf(),
            inode: 0,
            len: 0,
            modified: None,
        },
    }
}
