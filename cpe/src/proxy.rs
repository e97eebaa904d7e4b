//! One LAN connection from accept to close.
//!
//! 1. Check it is to be converted (LAN prefix, ports, bypasses, no loop); if not,
//!    reset it (hac-cpe only receives what the rules redirect, so this is a
//!    configuration mismatch, not traffic to pass).
//! 2. Wait briefly for the LAN host's first bytes (a client-first protocol sends
//!    its request at once): they ride in the SYN after the Convert request, so
//!    the server sees the request as early as on a direct connection.
//! 3. Convert exchange over the best uplink, the next one when a SYN goes
//!    unanswered (the LAN bytes are still held, so nothing was lost).
//! 4. Refused or failed: reset the LAN connection (SO_LINGER 0) — the LAN host
//!    saw no byte from a server that did not accept.
//! 5. Accepted: server bytes that came with the reply go to the LAN, then both
//!    directions are relayed; an error on one side resets the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::net::TcpStream;

use crate::config::{Config, MptcpServers as Mode};
use crate::convert;
use crate::metrics::Metrics;
use crate::paths::Uplinks;
use crate::relay;
use crate::servers::MptcpServers;
use crate::upstream::{self, AttemptError, Established};

/// Everything a connection needs, shared.
#[derive(Debug)]
pub struct Ctx {
    /// The configuration.
    pub cfg: Config,
    /// Uplink state.
    pub uplinks: Uplinks,
    /// MPTCP-capable servers.
    pub servers: MptcpServers,
    /// Metrics.
    pub metrics: Metrics,
    /// Attempts waiting for the concentrator's SYN-ACK.
    pub pending: tokio::sync::Semaphore,
}

impl Ctx {
    /// Shared state for `cfg`.
    #[must_use]
    pub fn new(cfg: Config) -> Arc<Ctx> {
        Arc::new(Ctx {
            uplinks: Uplinks::new(&cfg),
            servers: MptcpServers::new(cfg.mptcp_cache_entries, cfg.mptcp_cache_ttl),
            metrics: Metrics::new(),
            pending: tokio::sync::Semaphore::new(cfg.max_pending),
            cfg,
        })
    }
}

/// Ends a connection with a reset (SO_LINGER 0, then close).
pub fn reset(s: TcpStream) {
    let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

struct Active<'a>(&'a Metrics);
impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.dec();
    }
}

/// Serves one LAN connection whose original destination is `dst`.
pub async fn serve_lan(ctx: Arc<Ctx>, lan: TcpStream, peer: SocketAddr, dst: SocketAddr) {
    let m = &ctx.metrics;
    m.active.inc();
    let _active = Active(m);
    let cfg = &ctx.cfg;
    let local = lan.local_addr().ok();
    let why = cfg.refuse_reason(peer.ip(), dst).or_else(|| {
        local
            .filter(|l| crate::intercept::is_self(dst, *l, &cfg.listen))
            .map(|_| "destination is hac-cpe itself (not redirected)")
    });
    if let Some(why) = why {
        tracing::info!(%peer, %dst, "not converted: {why}; resetting");
        m.connections.with_label_values(&["rejected"]).inc();
        m.lan_resets.inc();
        reset(lan);
        return;
    }
    let _ = lan.set_nodelay(true);

    // The LAN host's first bytes, if they come at once.
    let mut first = vec![0u8; cfg.first_data_max];
    let mut have = 0;
    if cfg.first_data_max > 0 && !cfg.first_data_wait.is_zero() {
        let wait = async {
            loop {
                lan.readable().await?;
                match lan.try_read(&mut first[have..]) {
                    Ok(n) => return Ok::<usize, std::io::Error>(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(cfg.first_data_wait, wait).await {
            Ok(Ok(n)) => have = n,
            Ok(Err(e)) => {
                tracing::debug!(%peer, %dst, "LAN connection failed before any data: {e}");
                m.connections.with_label_values(&["failed"]).inc();
                return;
            }
            Err(_) => {}
        }
    }
    first.truncate(have);

    let up = match open_upstream(&ctx, dst, &first).await {
        Ok(up) => up,
        Err(e) => {
            match &e {
                AttemptError::Refused(r) => {
                    m.convert_errors.with_label_values(&[r.label()]).inc();
                    m.connections.with_label_values(&["refused"]).inc();
                    tracing::info!(%peer, %dst, "concentrator refused: {r}; resetting the LAN connection");
                    // RFC 8803 §6.2.8: the client resets on an Error TLV; the LAN
                    // host gets the reset (r.lan_action()).
                    debug_assert_eq!(r.lan_action(), convert::LanAction::Reset);
                }
                e => {
                    m.connections.with_label_values(&["failed"]).inc();
                    tracing::warn!(%peer, %dst, "no upstream connection: {e}; resetting the LAN connection");
                }
            }
            m.lan_resets.inc();
            reset(lan);
            return;
        }
    };
    let Established {
        stream: upstream,
        early,
        server_mptcp,
        ..
    } = up;

    let bytes_up = m.bytes.with_label_values(&["up"]);
    let bytes_down = m.bytes.with_label_values(&["down"]);
    if !early.is_empty() {
        if let Err(e) = relay::write_all(&lan, &early).await {
            tracing::debug!(%peer, %dst, "LAN write failed: {e}");
            reset(upstream);
            reset(lan);
            return;
        }
        bytes_down.inc_by(early.len() as u64);
    }
    bytes_up.inc_by(first.len() as u64);
    drop(first);
    let _ = server_mptcp;
    match relay::relay(
        &lan,
        &upstream,
        cfg.relay,
        cfg.relay_buffer,
        &bytes_up,
        &bytes_down,
    )
    .await
    {
        Ok(moved) => {
            tracing::debug!(%peer, %dst, up = moved.up, down = moved.down, "connection done");
        }
        Err(e) => {
            // Propagate the failure: a reset on one side resets the other
            // (RFC 8803 §4.2: downstream failure tears down upstream and vice versa).
            tracing::debug!(%peer, %dst, "relay ended: {e}; resetting both sides");
            m.lan_resets.inc();
            reset(upstream);
            reset(lan);
        }
    }
}

/// The upstream connection for `dst`: direct when the server is known to speak
/// MPTCP and the configuration allows it (falling back to the concentrator if
/// that fails), else through the concentrator.
///
/// Concentrator attempts are hedged across uplinks: the first starts on the best
/// uplink; when it has no answer after `syn_timeout` (or fails), the next uplink's
/// attempt starts while the first keeps running, and the first answer wins (the
/// others are dropped). A lost TFO SYN is retransmitted by Linux without its data,
/// which a converter ignores, so such an attempt only ends at `connect_timeout`;
/// the hedge keeps that from delaying the LAN host, and a merely slow answer is
/// still taken.
async fn open_upstream(
    ctx: &Arc<Ctx>,
    dst: SocketAddr,
    first: &[u8],
) -> Result<Established, AttemptError> {
    let cfg = &ctx.cfg;
    let m = &ctx.metrics;
    let now = Instant::now();
    if cfg.mptcp_servers == Mode::Direct && ctx.servers.is_mptcp(dst, now) {
        for src in ctx.uplinks.candidates(dst.is_ipv6(), now) {
            match upstream::direct_attempt(dst, src.addr, first, cfg.connect_timeout).await {
                Ok(e) => {
                    m.connections.with_label_values(&["direct"]).inc();
                    ctx.uplinks.mark_ok(src.uplink, Instant::now());
                    return Ok(e);
                }
                Err(e) => {
                    tracing::info!(%dst, uplink = ctx.uplinks.name(src.uplink), "direct MPTCP connection failed: {e}");
                    if !e.retryable() {
                        break;
                    }
                }
            }
        }
        ctx.servers.forget(dst);
        m.mptcp_servers.set(ctx.servers.len() as i64);
    }

    let conc = cfg.concentrator_for(dst.ip());
    let mut req = Vec::with_capacity(convert::MAX_REQUEST_MESSAGE + first.len());
    convert::request(dst, cfg.mptcp_servers != Mode::Off, first, &mut req);
    let req: Arc<[u8]> = req.into();
    let mut left = ctx.uplinks.candidates(conc.is_ipv6(), now).into_iter();
    let mut running = tokio::task::JoinSet::new();
    let spawn = |running: &mut tokio::task::JoinSet<_>, src: crate::paths::Source| {
        let (ctx, req) = (ctx.clone(), req.clone());
        running.spawn(async move {
            let started = Instant::now();
            let r = upstream::convert_attempt(
                conc,
                src.addr,
                &req,
                ctx.cfg.connect_timeout,
                &ctx.pending,
            )
            .await;
            (src, started, r)
        });
    };
    if let Some(src) = left.next() {
        spawn(&mut running, src);
    }
    let mut last = AttemptError::SynTimeout;
    let mut hedge = Box::pin(tokio::time::sleep(cfg.syn_timeout));
    loop {
        let more = left.len() > 0;
        tokio::select! {
            () = &mut hedge, if more => {
                if let Some(src) = left.next() {
                    spawn(&mut running, src);
                }
                hedge.as_mut().reset(tokio::time::Instant::now() + cfg.syn_timeout);
            }
            done = running.join_next() => {
                let Some(done) = done else {
                    // Nothing running and nothing left.
                    return Err(last);
                };
                let Ok((src, started, r)) = done else {
                    continue;
                };
                let name = ctx.uplinks.name(src.uplink);
                match r {
                    Ok(e) => {
                        m.attempts.with_label_values(&[name, "ok"]).inc();
                        m.connections.with_label_values(&["converted"]).inc();
                        ctx.uplinks.mark_ok(src.uplink, Instant::now());
                        if e.server_mptcp && cfg.mptcp_servers != Mode::Off {
                            ctx.servers.learn(dst, Instant::now());
                            m.mptcp_servers.set(ctx.servers.len() as i64);
                            tracing::info!(%dst, "server speaks MPTCP (Extended TCP Header)");
                        }
                        // Dropping `running` aborts the other attempts.
                        return Ok(e);
                    }
                    Err(e) if !e.retryable() => {
                        m.attempts.with_label_values(&[name, "answered"]).inc();
                        // The concentrator answered over this uplink.
                        ctx.uplinks.mark_ok(src.uplink, Instant::now());
                        return Err(e);
                    }
                    Err(e) => {
                        m.attempts.with_label_values(&[name, e.label()]).inc();
                        if matches!(e, AttemptError::SynTimeout)
                            && ctx.uplinks.hold_down(src.uplink, started, Instant::now())
                        {
                            tracing::info!(uplink = name, "no SYN-ACK from the concentrator: uplink held down");
                        }
                        tracing::info!(%dst, uplink = name, "Convert attempt failed: {e}");
                        // Failed outright: the next uplink at once.
                        if let Some(src) = left.next() {
                            spawn(&mut running, src);
                            hedge.as_mut().reset(tokio::time::Instant::now() + cfg.syn_timeout);
                        }
                        last = e;
                    }
                }
            }
        }
    }
}
