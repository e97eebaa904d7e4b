//! Prometheus text metrics (`/metrics`), bounded labels only (result, code,
//! direction, uplink — never per LAN host or per server).

use std::net::SocketAddr;
use std::time::Duration;

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every metric hac-cpe exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry they are in.
    pub registry: Registry,
    /// LAN connections by result: converted, direct, refused, failed, rejected.
    pub connections: IntCounterVec,
    /// Convert Error TLVs received, by code.
    pub convert_errors: IntCounterVec,
    /// LAN connections being served.
    pub active: IntGauge,
    /// Bytes relayed: up (LAN → concentrator), down.
    pub bytes: IntCounterVec,
    /// Connection attempts per uplink and result (ok, timeout, error).
    pub attempts: IntCounterVec,
    /// 1 when the uplink is usable for new connections.
    pub uplink_usable: IntGaugeVec,
    /// Servers remembered as MPTCP-capable.
    pub mptcp_servers: IntGauge,
    /// LAN connections ended with a reset.
    pub lan_resets: IntCounter,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

impl Metrics {
    /// Creates and registers the metrics.
    #[must_use]
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let connections = counter_vec(
            r,
            "hac_cpe_connections_total",
            "LAN connections handled, by result",
            &["result"],
        );
        let convert_errors = counter_vec(
            r,
            "hac_cpe_convert_errors_total",
            "RFC 8803 Error TLVs received from the concentrator, by code",
            &["code"],
        );
        let bytes = counter_vec(
            r,
            "hac_cpe_bytes_total",
            "Bytes relayed, by direction (up: LAN to concentrator)",
            &["direction"],
        );
        let attempts = counter_vec(
            r,
            "hac_cpe_attempts_total",
            "Upstream connection attempts, by uplink of the initial subflow and result",
            &["uplink", "result"],
        );
        let active = IntGauge::new("hac_cpe_active_connections", "LAN connections being served")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(active.clone()));
        let uplink_usable = IntGaugeVec::new(
            Opts::new(
                "hac_cpe_uplink_usable",
                "1 when the uplink is up, has its address and is not held down",
            ),
            &["uplink"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(uplink_usable.clone()));
        let mptcp_servers = IntGauge::new(
            "hac_cpe_mptcp_servers",
            "Servers remembered as MPTCP-capable (RFC 8803 section 5.1)",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(mptcp_servers.clone()));
        let lan_resets = IntCounter::new(
            "hac_cpe_lan_resets_total",
            "LAN connections ended with a reset",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let _ = r.register(Box::new(lan_resets.clone()));
        let build = IntGaugeVec::new(
            Opts::new("hac_cpe_build_info", "hac-cpe version"),
            &["version"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let _ = r.register(Box::new(build));
        Metrics {
            registry,
            connections,
            convert_errors,
            active,
            bytes,
            attempts,
            uplink_usable,
            mptcp_servers,
            lan_resets,
        }
    }

    /// The text exposition.
    #[must_use]
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("metrics encoding failed: {e}");
        }
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Serves `GET /metrics` on `addr` (request head bounded to 8 KiB and 5 s).
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<()> {
    let l = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    loop {
        let (mut c, _) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(5), async {
                let mut head = Vec::with_capacity(512);
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n")
                    && !head.windows(2).any(|w| w == b"\n\n")
                {
                    if head.len() > 8192 {
                        return Ok(());
                    }
                    let n = c.read(&mut chunk).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    head.extend_from_slice(&chunk[..n]);
                }
                let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
                let line = String::from_utf8_lossy(line);
                let mut parts = line.trim_end().split(' ');
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (status, ctype, body) =
                    if method == "GET" && target.split('?').next() == Some("/metrics") {
                        ("200 OK", prometheus::TEXT_FORMAT, m.render())
                    } else {
                        (
                            "404 Not Found",
                            "text/plain; charset=utf-8",
                            b"GET /metrics\n".to_vec(),
                        )
                    };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                c.write_all(head.as_bytes()).await?;
                c.write_all(&body).await?;
                c.shutdown().await
            })
            .await;
            if let Ok(Err(e)) = r {
                tracing::debug!("metrics client: {e}");
            }
        });
    }
}
