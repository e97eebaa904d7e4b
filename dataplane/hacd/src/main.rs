//! `hacd --config FILE.toml`: the hybrid-access concentrator on DPDK.
//! `hacd --check --config FILE.toml` validates the configuration and exits.
//! `hacd --no-dataplane --config FILE.toml` runs the workers without DPDK (a NIC that
//! receives nothing) and the management API: for tests of the API.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HACD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: lab.sh and services log to files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut args = std::env::args().skip(1);
    let mut config: Option<PathBuf> = None;
    let mut check = false;
    let mut no_dataplane = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => config = args.next().map(PathBuf::from),
            "--check" => check = true,
            "--no-dataplane" => no_dataplane = true,
            "--help" | "-h" => {
                println!("usage: hacd [--check | --no-dataplane] --config FILE.toml");
                return Ok(());
            }
            other => bail!(
                "unknown argument `{other}` (usage: hacd [--check | --no-dataplane] --config FILE.toml)"
            ),
        }
    }
    let path = config.context("--config FILE.toml is required")?;
    let cfg = hac_hacd::config::Config::load(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if check {
        println!(
            "{}: valid ({} ports, {} workers)",
            path.display(),
            cfg.ports.len(),
            cfg.lcores.len()
        );
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    if no_dataplane {
        return hac_hacd::nonic::run(cfg, stop);
    }
    hac_hacd::dpdk::run(cfg, stop)
}
