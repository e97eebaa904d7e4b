//! hac-cpe — see the crate documentation and docs/dual-proxy.md.
//!
//! ```text
//! hac-cpe --config FILE [--check]
//! ```

use std::sync::Arc;

use anyhow::Context;
use hac_cpe::config::Config;
use hac_cpe::proxy::{self, Ctx};
use hac_cpe::{intercept, metrics, paths};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

fn usage() -> ! {
    eprintln!("usage: hac-cpe --config FILE [--check]");
    std::process::exit(2)
}

fn main() -> anyhow::Result<()> {
    let mut config = None;
    let mut check = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => config = Some(args.next().unwrap_or_else(|| usage())),
            "--check" => check = true,
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let Some(path) = config else { usage() };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HAC_CPE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let cfg = Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    if check {
        println!("{path}: ok");
        return Ok(());
    }
    raise_nofile(&cfg);
    let rt = if cfg.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run(cfg))
}

/// Each connection holds two sockets and, with splice, two pipes (six fds).
fn raise_nofile(cfg: &Config) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let want = (cfg.max_connections as u64)
        .saturating_mul(6)
        .saturating_add(256);
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < want
    {
        let new = want.min(hard);
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, new, hard) {
            tracing::warn!("raising RLIMIT_NOFILE to {new}: {e}");
        }
        if new < want {
            tracing::warn!(
                "RLIMIT_NOFILE hard limit {hard} is below the {want} that relay.max_connections = {} needs",
                cfg.max_connections
            );
        }
    }
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    paths::setup(&cfg).map_err(|e| anyhow::anyhow!("setting up MPTCP: {e}"))?;
    let ctx = Ctx::new(cfg);
    let cfg = &ctx.cfg;
    let mut listeners = Vec::new();
    for a in &cfg.listen {
        listeners.push(listener(*a).with_context(|| format!("listening on {a}"))?);
        tracing::info!(listen = %a, "accepting redirected LAN connections");
    }
    if cfg.install_rules {
        intercept::install(cfg).map_err(|e| anyhow::anyhow!("installing nftables rules: {e}"))?;
        tracing::info!(
            table = intercept::TABLE,
            "nftables REDIRECT rules installed"
        );
    }
    ctx.uplinks.reconcile(cfg.manage_endpoints, &ctx.metrics);
    {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ctx.cfg.reconcile_interval).await;
                let c = ctx.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    c.uplinks.reconcile(c.cfg.manage_endpoints, &c.metrics);
                })
                .await;
            }
        });
    }
    if let Some(addr) = cfg.metrics {
        let m = ctx.metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, m).await {
                tracing::error!(%addr, "metrics: {e}");
            }
        });
    }
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    for l in listeners {
        tokio::spawn(accept_loop(ctx.clone(), l, slots.clone()));
    }
    tracing::info!(
        concentrator = ?cfg.concentrator,
        port = cfg.concentrator_port,
        uplinks = cfg.uplinks.len(),
        "hac-cpe running"
    );
    wait_for_signal().await?;
    tracing::info!("stopping");
    if cfg.install_rules
        && let Err(e) = intercept::remove()
    {
        tracing::warn!("removing nftables rules: {e}");
    }
    Ok(())
}

/// A listener; an IPv6 one is IPv6-only so that `0.0.0.0:P` and `[::]:P` can both
/// be configured.
fn listener(a: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(a), Type::STREAM.cloexec(), None)?;
    s.set_reuse_address(true)?;
    if a.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&a.into())?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    TcpListener::from_std(s.into())
}

async fn accept_loop(ctx: Arc<Ctx>, l: TcpListener, slots: Arc<Semaphore>) {
    loop {
        // At most max_connections at once: the rest wait in the listen backlog.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (s, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match intercept::original_dst(&s) {
                Ok(dst) => proxy::serve_lan(ctx, s, peer, dst).await,
                Err(e) => {
                    tracing::warn!(%peer, "no original destination ({e}); resetting");
                    ctx.metrics
                        .connections
                        .with_label_values(&["rejected"])
                        .inc();
                    proxy::reset(s);
                }
            }
        });
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    }
}
