//! The `hac.v1` management API (proto/hac/v1/hac.proto), served by hacd on a unix
//! socket (and optionally TCP) from a tokio runtime on a thread of the main lcore;
//! never on a worker lcore.
//!
//! Every change follows one path ([`Inner::change`]): the running configuration is
//! copied, the request applied to the copy, the copy validated whole (an
//! INVALID_ARGUMENT names the field and why, and nothing changes), saved atomically
//! to the state file, then published to the workers (control.rs), which take it
//! between bursts for their new connections.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hac_core::policy::{Mode, fixed_denials, private_ranges};
use hac_core::pool::Prefix;
use hac_core::{Policy, SessionFilter, State};
use hac_proto::v1 as pb;
use hac_proto::v1::hac_server::{Hac, HacServer};
use tokio::sync::{Mutex, oneshot};
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::control::{Control, Published, Query, SESSIONS_PER_PAGE, WorkerReport};
use crate::runtime::WorkerStats;
use crate::state::{
    Invalid, LimitsEntry, PoolEntry, PoolSettings, RuleEntry, RunningConfig, SubscriberEntry,
    parse_mode, parse_prefix,
};

/// Largest request accepted (bytes, encoded).
pub const MAX_REQUEST: usize = 256 * 1024;
/// How long a worker has to answer a query.
const WORKER_TIMEOUT: Duration = Duration::from_secs(2);
/// Sessions listed when the request names no limit, and at most.
const DEFAULT_SESSIONS: usize = 1000;
const MAX_SESSIONS: usize = 100_000;

/// Everything the service needs, shared by its handlers.
#[derive(Debug)]
struct Inner {
    boot: Config,
    control: Arc<Control>,
    state_file: PathBuf,
    running: Mutex<RunningConfig>,
    /// The pool port range and block size the workers run (fixed until restart).
    active_ports: PoolSettings,
    /// Service addresses and pool prefixes ever published since start: the
    /// appliance keeps answering for them (ARP/ND, return traffic) so live
    /// connections on a removed address keep working until restart.
    retained: parking_lot::Mutex<(Vec<IpAddr>, Vec<Prefix>)>,
    stats: Vec<Arc<WorkerStats>>,
}

/// The `hac.v1.Hac` service.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

fn bad(e: Invalid) -> Status {
    Status::invalid_argument(e.to_string())
}

/// What the workers start with, and the service around it.
#[derive(Debug)]
pub struct Start {
    /// The configuration (engine part from the running configuration).
    pub config: Config,
    /// The control handle the workers attach to.
    pub control: Arc<Control>,
    service: Option<(RunningConfig, PoolSettings, PathBuf)>,
}

/// Builds the first published configuration: from the state file when there is one
/// (restored), else from the bootstrap file (saved as the first state file).
/// Without `[management]`, the bootstrap configuration alone (no API).
pub fn prepare(boot: Config, workers: usize) -> anyhow::Result<Start> {
    let Some(m) = boot.management.clone() else {
        let policy = Arc::new(Policy::new(hac_core::PolicySpec {
            deny_private_destinations: boot.engine.deny_private_destinations,
            ..hac_core::PolicySpec::default()
        })?);
        let first = Published {
            generation: 1,
            engine: boot.engine.clone(),
            policy,
            host: Arc::new(boot.clone()),
        };
        return Ok(Start {
            control: Arc::new(Control::new(workers, first)),
            config: boot,
            service: None,
        });
    };
    let (running, restored) =
        match RunningConfig::load(&m.state_file).map_err(|e| anyhow::anyhow!("{e}"))? {
            Some(rc) => (rc, true),
            None => (RunningConfig::from_bootstrap(&boot), false),
        };
    let active = running.pool_settings;
    let (engine, spec) = running
        .compile(&boot.engine, active)
        .map_err(|e| anyhow::anyhow!("{}: {e}", m.state_file.display()))?;
    if restored {
        tracing::info!(state_file = %m.state_file.display(), "running configuration restored");
    } else {
        running
            .save(&m.state_file)
            .map_err(|e| anyhow::anyhow!("saving {}: {e}", m.state_file.display()))?;
        tracing::info!(state_file = %m.state_file.display(), "running configuration seeded from the bootstrap file");
    }
    let mut config = boot;
    config.engine = engine.clone();
    let first = Published {
        generation: 1,
        engine,
        policy: Arc::new(Policy::new(spec)?),
        host: Arc::new(config.clone()),
    };
    Ok(Start {
        control: Arc::new(Control::new(workers, first)),
        config,
        service: Some((running, active, m.state_file.clone())),
    })
}

impl Start {
    /// Starts the API thread (when `[management]` is on): a tokio runtime on a new
    /// thread of the calling (main) lcore, serving until `stop`.
    pub fn spawn_api(
        &mut self,
        stats: Vec<Arc<WorkerStats>>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
        let Some((running, active_ports, state_file)) = self.service.take() else {
            return Ok(None);
        };
        let Some(m) = self.config.management.clone() else {
            return Ok(None);
        };
        let e = &self.config.engine;
        let inner = Arc::new(Inner {
            boot: self.config.clone(),
            control: Arc::clone(&self.control),
            state_file,
            running: Mutex::new(running),
            active_ports,
            retained: parking_lot::Mutex::new((e.service_addrs.clone(), e.pool.prefixes.clone())),
            stats,
        });
        let svc = Service { inner };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Bind before returning, so a bad socket path fails the start.
        let uds = rt.block_on(async { bind_unix(&m.socket) })?;
        let tcp = match m.listen {
            Some(a) => Some(
                rt.block_on(tokio::net::TcpListener::bind(a))
                    .map_err(|e| anyhow::anyhow!("management.listen {a}: {e}"))?,
            ),
            None => None,
        };
        tracing::info!(socket = %m.socket.display(), listen = ?m.listen, "management API listening");
        let socket = m.socket.clone();
        let handle = std::thread::Builder::new()
            .name("hacd-mgmt".into())
            .spawn(move || {
                rt.block_on(serve(svc, uds, tcp, stop));
                let _ = std::fs::remove_file(&socket);
            })?;
        Ok(Some(handle))
    }
}

fn bind_unix(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("management.socket {}: {e}", dir.display()))?;
    }
    // A socket left by a previous run (hacd holds a lock on its ports anyway).
    if std::fs::symlink_metadata(path)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
    {
        let _ = std::fs::remove_file(path);
    }
    let l = tokio::net::UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("management.socket {}: {e}", path.display()))?;
    // Owner and group only: the API changes the appliance.
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o660));
    Ok(l)
}

async fn serve(
    svc: Service,
    uds: tokio::net::UnixListener,
    tcp: Option<tokio::net::TcpListener>,
    stop: Arc<AtomicBool>,
) {
    let stopped = |stop: Arc<AtomicBool>| async move {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let router = || -> anyhow::Result<tonic::transport::server::Router> {
        let (health, health_svc) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        tokio::spawn(async move {
            health.set_serving::<HacServer<Service>>().await;
        });
        Ok(tonic::transport::Server::builder()
            .add_service(health_svc)
            .add_service(reflection)
            .add_service(
                HacServer::new(svc.clone())
                    .max_decoding_message_size(MAX_REQUEST)
                    .max_encoding_message_size(16 << 20),
            ))
    };
    let uds_server = match router() {
        Ok(r) => r.serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(uds),
            stopped(Arc::clone(&stop)),
        ),
        Err(e) => {
            tracing::error!("management API: {e}");
            return;
        }
    };
    let tcp_server = async {
        let Some(l) = tcp else { return Ok(()) };
        match router() {
            Ok(r) => {
                r.serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(l),
                    stopped(Arc::clone(&stop)),
                )
                .await
            }
            Err(e) => {
                tracing::error!("management API: {e}");
                Ok(())
            }
        }
    };
    let (a, b) = tokio::join!(uds_server, tcp_server);
    for r in [a, b] {
        if let Err(e) = r {
            tracing::error!("management API stopped: {e}");
        }
    }
}

// ------------------------------------------------------------------ conversions

fn pfx_str(p: &Prefix) -> String {
    format!("{}/{}", p.addr, p.len)
}

fn to_pb_prefixes(v: &[String]) -> Vec<pb::Prefix> {
    v.iter().map(|p| pb::Prefix { prefix: p.clone() }).collect()
}

/// Prefixes of a request, in canonical text ("ADDR/LEN").
fn from_pb_prefixes(field: &str, v: &[pb::Prefix]) -> Result<Vec<String>, Status> {
    v.iter()
        .enumerate()
        .map(|(i, p)| {
            parse_prefix(&format!("{field}[{i}]"), &p.prefix)
                .map(|p| pfx_str(&p))
                .map_err(bad)
        })
        .collect()
}

fn to_pb_limits(l: LimitsEntry) -> pb::Limits {
    pb::Limits {
        max_ports: l.max_ports,
        max_connections: l.max_connections,
        max_new_connections_per_second: l.max_new_connections_per_second,
    }
}

fn from_pb_limits(l: &pb::Limits) -> LimitsEntry {
    LimitsEntry {
        max_ports: l.max_ports,
        max_connections: l.max_connections,
        max_new_connections_per_second: l.max_new_connections_per_second,
    }
}

fn sched_to_pb(s: Option<&str>) -> i32 {
    (match s {
        Some("aggregate") => pb::Scheduler::Aggregate,
        Some("overflow") => pb::Scheduler::Overflow,
        Some("failover") => pb::Scheduler::Failover,
        _ => pb::Scheduler::Unspecified,
    }) as i32
}

fn sched_from_pb(field: &str, v: i32) -> Result<Option<String>, Status> {
    match pb::Scheduler::try_from(v) {
        Ok(pb::Scheduler::Unspecified) => Ok(None),
        Ok(pb::Scheduler::Aggregate) => Ok(Some("aggregate".into())),
        Ok(pb::Scheduler::Overflow) => Ok(Some("overflow".into())),
        Ok(pb::Scheduler::Failover) => Ok(Some("failover".into())),
        Err(_) => Err(bad(Invalid {
            field: field.into(),
            reason: format!("{v} is not a scheduler"),
        })),
    }
}

fn mode_to_pb(m: &str) -> i32 {
    match parse_mode("mode", m) {
        Ok(Mode::DualProxy) => pb::Mode::DualProxy as i32,
        _ => pb::Mode::SingleProxy as i32,
    }
}

fn to_pb_subscriber(s: &SubscriberEntry) -> pb::Subscriber {
    pb::Subscriber {
        name: s.name.clone(),
        prefixes: to_pb_prefixes(&s.prefixes),
        limits: s.limits.map(to_pb_limits),
        scheduler: sched_to_pb(s.scheduler.as_deref()),
        primary_access: to_pb_prefixes(&s.primary_access),
    }
}

fn from_pb_subscriber(s: Option<pb::Subscriber>) -> Result<SubscriberEntry, Status> {
    let s = s.ok_or_else(|| Status::invalid_argument("subscriber: required"))?;
    crate::state::check_subscriber_name(&s.name).map_err(bad)?;
    Ok(SubscriberEntry {
        prefixes: from_pb_prefixes("subscriber.prefixes", &s.prefixes)?,
        limits: s.limits.as_ref().map(from_pb_limits),
        scheduler: sched_from_pb("subscriber.scheduler", s.scheduler)?,
        primary_access: from_pb_prefixes("subscriber.primary_access", &s.primary_access)?,
        name: s.name,
    })
}

fn to_pb_policy(rc: &RunningConfig) -> pb::Policy {
    let p = &rc.policy;
    pb::Policy {
        allow_unlisted_clients: p.allow_unlisted_clients,
        deny_private_destinations: p.deny_private_destinations,
        default_limits: Some(to_pb_limits(p.default_limits)),
        default_scheduler: sched_to_pb(Some(&p.default_scheduler)),
        primary_access: to_pb_prefixes(&p.primary_access),
    }
}

fn to_pb_converter(rc: &RunningConfig) -> pb::Converter {
    let c = &rc.converter;
    pb::Converter {
        addresses: c.addresses.clone(),
        port: u32::from(c.port),
        timeouts: Some(pb::Timeouts {
            syn_ms: c.timeouts.syn_ms,
            established_seconds: c.timeouts.established_seconds,
            transitory_seconds: c.timeouts.transitory_seconds,
        }),
    }
}

fn to_pb_settings(s: PoolSettings) -> pb::PoolSettings {
    pb::PoolSettings {
        port_low: u32::from(s.port_low),
        port_high: u32::from(s.port_high),
        block_size: u32::from(s.block_size),
        hold_down_seconds: s.hold_down_seconds,
    }
}

fn port_u16(field: &str, v: u32) -> Result<u16, Status> {
    u16::try_from(v).map_err(|_| {
        bad(Invalid {
            field: field.into(),
            reason: format!("{v} is not a port (0..=65535)"),
        })
    })
}

fn state_to_pb(s: State) -> i32 {
    (match s {
        State::SynSent => pb::SessionState::SynSent,
        State::SynAckSent => pb::SessionState::SynAckSent,
        State::Established => pb::SessionState::Established,
        State::ReplyClose => pb::SessionState::ReplyClose,
        State::ClientGone => pb::SessionState::ClientGone,
        State::TimeWait => pb::SessionState::TimeWait,
    }) as i32
}

fn to_pb_session(worker: usize, s: &hac_core::SessionInfo) -> pb::Session {
    pb::Session {
        id: Some(pb::SessionId {
            worker: worker as u32,
            slot: s.id.slot,
            generation: s.id.generation,
        }),
        state: state_to_pb(s.state),
        client: s.client.to_string(),
        service: s.service.to_string(),
        server: s.server.to_string(),
        pool: s.pool.to_string(),
        subscriber: s.subscriber.as_deref().unwrap_or("").into(),
        mptcp: s.mptcp,
        fallback: s.fallback,
        subflows: s.subflows,
        idle_ms: s.idle_us / 1000,
        bytes_up: s.bytes_up,
        bytes_down: s.bytes_down,
    }
}

type Stream<T> = tokio_stream::Iter<std::vec::IntoIter<Result<T, Status>>>;

fn stream<T>(v: Vec<T>) -> Response<Stream<T>> {
    Response::new(tokio_stream::iter(
        v.into_iter().map(Ok).collect::<Vec<_>>(),
    ))
}

// ------------------------------------------------------------------ the service

impl Inner {
    /// Applies `f` to a copy of the running configuration, validates it whole,
    /// saves it, publishes it; on any error nothing changes.
    async fn change<T>(
        &self,
        f: impl FnOnce(&mut RunningConfig) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let mut running = self.running.lock().await;
        let mut next = running.clone();
        let out = f(&mut next)?;
        let (engine, spec) = next
            .compile(&self.boot.engine, self.active_ports)
            .map_err(bad)?;
        let policy = Policy::new(spec).map_err(|e| {
            bad(Invalid {
                field: e.field,
                reason: e.reason,
            })
        })?;
        next.save(&self.state_file).map_err(|e| {
            Status::internal(format!(
                "saving {}: {e} (nothing changed)",
                self.state_file.display()
            ))
        })?;
        let host = {
            let mut r = self.retained.lock();
            for a in &engine.service_addrs {
                if !r.0.contains(a) {
                    r.0.push(*a);
                }
            }
            for p in &engine.pool.prefixes {
                if !r.1.contains(p) {
                    r.1.push(*p);
                }
            }
            let mut host = self.boot.clone();
            host.engine = engine.clone();
            host.engine.service_addrs = r.0.clone();
            host.engine.pool.prefixes = r.1.clone();
            host
        };
        self.control.publish(Published {
            generation: self.control.generation() + 1,
            engine,
            policy: Arc::new(policy),
            host: Arc::new(host),
        });
        *running = next;
        Ok(out)
    }

    async fn snapshot(&self) -> RunningConfig {
        self.running.lock().await.clone()
    }

    /// Asks worker `w` and waits for the answer.
    async fn ask<T>(
        &self,
        w: usize,
        make: impl FnOnce(oneshot::Sender<T>) -> Query,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        if self.control.send(w, make(tx)).is_err() {
            return Err(Status::resource_exhausted(format!(
                "worker {w}: its request queue is full, try again"
            )));
        }
        match tokio::time::timeout(WORKER_TIMEOUT, rx).await {
            Ok(Ok(v)) => Ok(v),
            _ => Err(Status::unavailable(format!(
                "worker {w} did not answer within {} s",
                WORKER_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn reports(
        &self,
        subscriber: Option<String>,
        pools: Vec<Prefix>,
    ) -> Result<Vec<WorkerReport>, Status> {
        let mut out = Vec::new();
        for w in 0..self.control.workers() {
            let (s, p) = (subscriber.clone(), pools.clone());
            out.push(
                self.ask(w, |reply| Query::Report {
                    subscriber: s,
                    pools: p,
                    reply,
                })
                .await?,
            );
        }
        Ok(out)
    }

    fn worker_of(
        &self,
        id: Option<&pb::SessionId>,
    ) -> Result<(usize, hac_core::SessionId), Status> {
        let id = id.ok_or_else(|| Status::invalid_argument("id: required"))?;
        let w = id.worker as usize;
        if w >= self.control.workers() {
            return Err(Status::invalid_argument(format!(
                "id.worker: {w} does not exist (0..{})",
                self.control.workers()
            )));
        }
        Ok((
            w,
            hac_core::SessionId {
                slot: id.slot,
                generation: id.generation,
            },
        ))
    }
}

fn not_found(what: &str, name: &str) -> Status {
    Status::not_found(format!("{what} `{name}` does not exist"))
}

#[tonic::async_trait]
impl Hac for Service {
    // ---------------------------------------------------------------- pools

    async fn add_pool(
        &self,
        req: Request<pb::AddPoolRequest>,
    ) -> Result<Response<pb::AddPoolResponse>, Status> {
        let pool = req
            .into_inner()
            .pool
            .ok_or_else(|| Status::invalid_argument("pool: required"))?;
        crate::state::check_pool_name(&pool.name).map_err(bad)?;
        let entry = PoolEntry {
            name: pool.name.clone(),
            prefixes: from_pb_prefixes("pool.prefixes", &pool.prefixes)?,
        };
        let e2 = entry.clone();
        self.inner
            .change(move |rc| {
                if rc.pools.iter().any(|p| p.name == e2.name) {
                    return Err(Status::already_exists(format!(
                        "pool `{}` already exists",
                        e2.name
                    )));
                }
                rc.pools.push(e2);
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::AddPoolResponse {
            pool: Some(pb::Pool {
                name: entry.name,
                prefixes: to_pb_prefixes(&entry.prefixes),
            }),
        }))
    }

    async fn delete_pool(
        &self,
        req: Request<pb::DeletePoolRequest>,
    ) -> Result<Response<pb::DeletePoolResponse>, Status> {
        let name = req.into_inner().name;
        self.inner
            .change(|rc| {
                let n = rc.pools.len();
                rc.pools.retain(|p| p.name != name);
                if rc.pools.len() == n {
                    return Err(not_found("pool", &name));
                }
                if rc.pools.is_empty() {
                    return Err(Status::failed_precondition(format!(
                        "pool `{name}` is the last pool: add another before deleting it"
                    )));
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::DeletePoolResponse {}))
    }

    type ListPoolsStream = Stream<pb::ListPoolsResponse>;

    async fn list_pools(
        &self,
        _req: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<Self::ListPoolsStream>, Status> {
        let rc = self.inner.snapshot().await;
        let mut all = Vec::new();
        let mut owner = Vec::new();
        for (i, p) in rc.pools.iter().enumerate() {
            for s in &p.prefixes {
                if let Ok(q) = parse_prefix("", s) {
                    all.push(q);
                    owner.push(i);
                }
            }
        }
        let reports = self.inner.reports(None, all.clone()).await?;
        let mut used = vec![0u64; rc.pools.len()];
        for r in &reports {
            for (k, n) in r.pool_ports.iter().enumerate() {
                used[owner[k]] += n;
            }
        }
        Ok(stream(
            rc.pools
                .iter()
                .zip(used)
                .map(|(p, n)| pb::ListPoolsResponse {
                    pool: Some(pb::Pool {
                        name: p.name.clone(),
                        prefixes: to_pb_prefixes(&p.prefixes),
                    }),
                    ports_in_use: n,
                })
                .collect(),
        ))
    }

    async fn get_pool_settings(
        &self,
        _req: Request<pb::GetPoolSettingsRequest>,
    ) -> Result<Response<pb::GetPoolSettingsResponse>, Status> {
        let rc = self.inner.snapshot().await;
        let active = PoolSettings {
            hold_down_seconds: rc.pool_settings.hold_down_seconds,
            ..self.inner.active_ports
        };
        Ok(Response::new(pb::GetPoolSettingsResponse {
            active: Some(to_pb_settings(active)),
            saved: Some(to_pb_settings(rc.pool_settings)),
            restart_required: active != rc.pool_settings,
            paired_by: match parse_mode("mode", &rc.mode) {
                Ok(Mode::DualProxy) => "subscriber".into(),
                _ => "client-address".into(),
            },
        }))
    }

    async fn set_pool_settings(
        &self,
        req: Request<pb::SetPoolSettingsRequest>,
    ) -> Result<Response<pb::SetPoolSettingsResponse>, Status> {
        let r = req.into_inner();
        let lo = r.port_low.map(|v| port_u16("port_low", v)).transpose()?;
        let hi = r.port_high.map(|v| port_u16("port_high", v)).transpose()?;
        let bs = r
            .block_size
            .map(|v| port_u16("block_size", v))
            .transpose()?;
        let saved = self
            .inner
            .change(|rc| {
                let s = &mut rc.pool_settings;
                if let Some(v) = lo {
                    s.port_low = v;
                }
                if let Some(v) = hi {
                    s.port_high = v;
                }
                if let Some(v) = bs {
                    s.block_size = v;
                }
                if let Some(v) = r.hold_down_seconds {
                    s.hold_down_seconds = v;
                }
                Ok(*s)
            })
            .await?;
        let active = PoolSettings {
            hold_down_seconds: saved.hold_down_seconds,
            ..self.inner.active_ports
        };
        Ok(Response::new(pb::SetPoolSettingsResponse {
            active: Some(to_pb_settings(active)),
            saved: Some(to_pb_settings(saved)),
            restart_required: active != saved,
        }))
    }

    // ---------------------------------------------------------------- policy

    async fn get_policy(
        &self,
        _req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::GetPolicyResponse>, Status> {
        let rc = self.inner.snapshot().await;
        Ok(Response::new(pb::GetPolicyResponse {
            policy: Some(to_pb_policy(&rc)),
        }))
    }

    async fn set_policy(
        &self,
        req: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::SetPolicyResponse>, Status> {
        let r = req.into_inner();
        let sched = sched_from_pb("default_scheduler", r.default_scheduler)?;
        let primary = if r.set_primary_access {
            Some(from_pb_prefixes("primary_access", &r.primary_access)?)
        } else if !r.primary_access.is_empty() {
            return Err(Status::invalid_argument(
                "primary_access: given without set_primary_access = true",
            ));
        } else {
            None
        };
        let rc = self
            .inner
            .change(|rc| {
                let p = &mut rc.policy;
                if let Some(v) = r.allow_unlisted_clients {
                    p.allow_unlisted_clients = v;
                }
                if let Some(v) = r.deny_private_destinations {
                    p.deny_private_destinations = v;
                }
                if let Some(l) = &r.default_limits {
                    p.default_limits = from_pb_limits(l);
                }
                if let Some(s) = sched {
                    p.default_scheduler = s;
                }
                if let Some(v) = primary {
                    p.primary_access = v;
                }
                Ok(rc.clone())
            })
            .await?;
        Ok(Response::new(pb::SetPolicyResponse {
            policy: Some(to_pb_policy(&rc)),
        }))
    }

    async fn add_destination_rule(
        &self,
        req: Request<pb::AddDestinationRuleRequest>,
    ) -> Result<Response<pb::AddDestinationRuleResponse>, Status> {
        let rule = req
            .into_inner()
            .rule
            .ok_or_else(|| Status::invalid_argument("rule: required"))?;
        let prefix = rule
            .prefix
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("rule.prefix: required"))?;
        let prefix = pfx_str(&parse_prefix("rule.prefix", &prefix.prefix).map_err(bad)?);
        let action = match pb::RuleAction::try_from(rule.action) {
            Ok(pb::RuleAction::Allow) => "allow",
            Ok(pb::RuleAction::Deny) => "deny",
            _ => {
                return Err(Status::invalid_argument(
                    "rule.action: expected ALLOW or DENY",
                ));
            }
        };
        if rule.comment.len() > 256 {
            return Err(Status::invalid_argument("rule.comment: at most 256 bytes"));
        }
        let entry = RuleEntry {
            prefix: prefix.clone(),
            action: action.into(),
            comment: rule.comment.clone(),
        };
        self.inner
            .change(|rc| {
                if rc.destination_rules.iter().any(|r| r.prefix == prefix) {
                    return Err(Status::already_exists(format!(
                        "a rule for {prefix} exists (delete it first)"
                    )));
                }
                rc.destination_rules.push(entry);
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::AddDestinationRuleResponse {
            rule: Some(pb::DestinationRule {
                prefix: Some(pb::Prefix { prefix }),
                action: rule.action,
                builtin: false,
                comment: rule.comment,
            }),
        }))
    }

    async fn delete_destination_rule(
        &self,
        req: Request<pb::DeleteDestinationRuleRequest>,
    ) -> Result<Response<pb::DeleteDestinationRuleResponse>, Status> {
        let p = req
            .into_inner()
            .prefix
            .ok_or_else(|| Status::invalid_argument("prefix: required"))?;
        let prefix = pfx_str(&parse_prefix("prefix", &p.prefix).map_err(bad)?);
        self.inner
            .change(|rc| {
                let n = rc.destination_rules.len();
                rc.destination_rules.retain(|r| r.prefix != prefix);
                if n == rc.destination_rules.len() {
                    return Err(not_found("destination rule", &prefix));
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::DeleteDestinationRuleResponse {}))
    }

    type ListDestinationRulesStream = Stream<pb::ListDestinationRulesResponse>;

    async fn list_destination_rules(
        &self,
        req: Request<pb::ListDestinationRulesRequest>,
    ) -> Result<Response<Self::ListDestinationRulesStream>, Status> {
        let rc = self.inner.snapshot().await;
        let mut out = Vec::new();
        let builtin = |p: String, comment: &str| pb::ListDestinationRulesResponse {
            rule: Some(pb::DestinationRule {
                prefix: Some(pb::Prefix { prefix: p }),
                action: pb::RuleAction::Deny as i32,
                builtin: true,
                comment: comment.into(),
            }),
        };
        if req.into_inner().include_builtin {
            for a in &rc.converter.addresses {
                out.push(builtin(a.clone(), "the converter's own service address"));
            }
            for p in &rc.pools {
                for q in &p.prefixes {
                    out.push(builtin(q.clone(), "the appliance's own pool"));
                }
            }
            for p in fixed_denials() {
                out.push(builtin(pfx_str(&p), "loopback, multicast or unspecified"));
            }
            if rc.policy.deny_private_destinations {
                for p in private_ranges() {
                    out.push(builtin(pfx_str(&p), "private range (overridable)"));
                }
            }
        }
        for r in &rc.destination_rules {
            out.push(pb::ListDestinationRulesResponse {
                rule: Some(pb::DestinationRule {
                    prefix: Some(pb::Prefix {
                        prefix: r.prefix.clone(),
                    }),
                    action: if r.action == "allow" {
                        pb::RuleAction::Allow as i32
                    } else {
                        pb::RuleAction::Deny as i32
                    },
                    builtin: false,
                    comment: r.comment.clone(),
                }),
            });
        }
        Ok(stream(out))
    }

    // ---------------------------------------------------------------- subscribers

    async fn add_subscriber(
        &self,
        req: Request<pb::AddSubscriberRequest>,
    ) -> Result<Response<pb::AddSubscriberResponse>, Status> {
        let entry = from_pb_subscriber(req.into_inner().subscriber)?;
        let e2 = entry.clone();
        self.inner
            .change(|rc| {
                if rc.subscribers.iter().any(|s| s.name == e2.name) {
                    return Err(Status::already_exists(format!(
                        "subscriber `{}` already exists (use update)",
                        e2.name
                    )));
                }
                rc.subscribers.push(e2);
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::AddSubscriberResponse {
            subscriber: Some(to_pb_subscriber(&entry)),
        }))
    }

    async fn update_subscriber(
        &self,
        req: Request<pb::UpdateSubscriberRequest>,
    ) -> Result<Response<pb::UpdateSubscriberResponse>, Status> {
        let entry = from_pb_subscriber(req.into_inner().subscriber)?;
        let e2 = entry.clone();
        self.inner
            .change(|rc| {
                let Some(s) = rc.subscribers.iter_mut().find(|s| s.name == e2.name) else {
                    return Err(not_found("subscriber", &e2.name));
                };
                *s = e2;
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::UpdateSubscriberResponse {
            subscriber: Some(to_pb_subscriber(&entry)),
        }))
    }

    async fn delete_subscriber(
        &self,
        req: Request<pb::DeleteSubscriberRequest>,
    ) -> Result<Response<pb::DeleteSubscriberResponse>, Status> {
        let name = req.into_inner().name;
        self.inner
            .change(|rc| {
                let n = rc.subscribers.len();
                rc.subscribers.retain(|s| s.name != name);
                if n == rc.subscribers.len() {
                    return Err(not_found("subscriber", &name));
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::DeleteSubscriberResponse {}))
    }

    async fn get_subscriber(
        &self,
        req: Request<pb::GetSubscriberRequest>,
    ) -> Result<Response<pb::GetSubscriberResponse>, Status> {
        let name = req.into_inner().name;
        let rc = self.inner.snapshot().await;
        let s = rc
            .subscribers
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| not_found("subscriber", &name))?;
        let reports = self.inner.reports(Some(name.clone()), Vec::new()).await?;
        Ok(Response::new(pb::GetSubscriberResponse {
            subscriber: Some(to_pb_subscriber(s)),
            connections: reports.iter().map(|r| r.subscriber.0).sum(),
            ports: reports.iter().map(|r| r.subscriber.1).sum(),
        }))
    }

    type ListSubscribersStream = Stream<pb::ListSubscribersResponse>;

    async fn list_subscribers(
        &self,
        _req: Request<pb::ListSubscribersRequest>,
    ) -> Result<Response<Self::ListSubscribersStream>, Status> {
        let rc = self.inner.snapshot().await;
        Ok(stream(
            rc.subscribers
                .iter()
                .map(|s| pb::ListSubscribersResponse {
                    subscriber: Some(to_pb_subscriber(s)),
                })
                .collect(),
        ))
    }

    // ---------------------------------------------------------------- mode

    async fn get_mode(
        &self,
        _req: Request<pb::GetModeRequest>,
    ) -> Result<Response<pb::GetModeResponse>, Status> {
        let rc = self.inner.snapshot().await;
        Ok(Response::new(pb::GetModeResponse {
            mode: mode_to_pb(&rc.mode),
        }))
    }

    async fn set_mode(
        &self,
        req: Request<pb::SetModeRequest>,
    ) -> Result<Response<pb::SetModeResponse>, Status> {
        let m = req.into_inner().mode;
        let name = match pb::Mode::try_from(m) {
            Ok(pb::Mode::SingleProxy) => Mode::SingleProxy.as_str(),
            Ok(pb::Mode::DualProxy) => Mode::DualProxy.as_str(),
            _ => {
                return Err(Status::invalid_argument(
                    "mode: expected SINGLE_PROXY or DUAL_PROXY",
                ));
            }
        };
        self.inner
            .change(|rc| {
                rc.mode = name.into();
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::SetModeResponse { mode: m }))
    }

    // ---------------------------------------------------------------- converter

    async fn get_converter(
        &self,
        _req: Request<pb::GetConverterRequest>,
    ) -> Result<Response<pb::GetConverterResponse>, Status> {
        let rc = self.inner.snapshot().await;
        Ok(Response::new(pb::GetConverterResponse {
            converter: Some(to_pb_converter(&rc)),
        }))
    }

    async fn set_converter(
        &self,
        req: Request<pb::SetConverterRequest>,
    ) -> Result<Response<pb::SetConverterResponse>, Status> {
        let r = req.into_inner();
        if !r.set_addresses && !r.addresses.is_empty() {
            return Err(Status::invalid_argument(
                "addresses: given without set_addresses = true",
            ));
        }
        let port = r.port.map(|p| port_u16("port", p)).transpose()?;
        let rc = self
            .inner
            .change(|rc| {
                let c = &mut rc.converter;
                if r.set_addresses {
                    for (i, a) in r.addresses.iter().enumerate() {
                        if a.parse::<IpAddr>().is_err() {
                            return Err(bad(Invalid {
                                field: format!("addresses[{i}]"),
                                reason: format!("`{a}` is not an IP address"),
                            }));
                        }
                    }
                    c.addresses = r.addresses.clone();
                }
                if let Some(p) = port {
                    c.port = p;
                }
                if let Some(v) = r.syn_ms {
                    c.timeouts.syn_ms = v;
                }
                if let Some(v) = r.established_seconds {
                    c.timeouts.established_seconds = v;
                }
                if let Some(v) = r.transitory_seconds {
                    c.timeouts.transitory_seconds = v;
                }
                Ok(rc.clone())
            })
            .await?;
        Ok(Response::new(pb::SetConverterResponse {
            converter: Some(to_pb_converter(&rc)),
        }))
    }

    // ---------------------------------------------------------------- sessions

    type ListSessionsStream = Stream<pb::ListSessionsResponse>;

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<Self::ListSessionsStream>, Status> {
        let r = req.into_inner();
        let opt_prefix = |field: &str, s: &str| -> Result<Option<Prefix>, Status> {
            if s.is_empty() {
                Ok(None)
            } else {
                parse_prefix(field, s).map(Some).map_err(bad)
            }
        };
        let filter = SessionFilter {
            subscriber: (!r.subscriber.is_empty()).then(|| r.subscriber.clone()),
            client: opt_prefix("client", &r.client)?,
            server: opt_prefix("server", &r.server)?,
            server_port: if r.server_port == 0 {
                None
            } else {
                Some(port_u16("server_port", r.server_port)?)
            },
        };
        if let Some(name) = &filter.subscriber {
            let rc = self.inner.snapshot().await;
            if !rc.subscribers.iter().any(|s| &s.name == name) {
                return Err(not_found("subscriber", name));
            }
        }
        let limit = match r.limit as usize {
            0 => DEFAULT_SESSIONS,
            n if n > MAX_SESSIONS => {
                return Err(Status::invalid_argument(format!(
                    "limit: at most {MAX_SESSIONS}"
                )));
            }
            n => n,
        };
        let workers: Vec<usize> = match r.worker {
            Some(w) if w as usize >= self.inner.control.workers() => {
                return Err(Status::invalid_argument(format!(
                    "worker: {w} does not exist (0..{})",
                    self.inner.control.workers()
                )));
            }
            Some(w) => vec![w as usize],
            None => (0..self.inner.control.workers()).collect(),
        };
        let mut out = Vec::new();
        'workers: for w in workers {
            let mut from = 0;
            loop {
                let want = (limit - out.len()).min(SESSIONS_PER_PAGE);
                let f = filter.clone();
                let (page, next) = self
                    .inner
                    .ask(w, |reply| Query::Sessions {
                        filter: f,
                        from,
                        limit: want,
                        reply,
                    })
                    .await?;
                out.extend(page.iter().map(|s| pb::ListSessionsResponse {
                    session: Some(to_pb_session(w, s)),
                }));
                if out.len() >= limit {
                    break 'workers;
                }
                match next {
                    Some(n) => from = n,
                    None => break,
                }
            }
        }
        Ok(stream(out))
    }

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let (w, id) = self.inner.worker_of(req.into_inner().id.as_ref())?;
        let found = self
            .inner
            .ask(w, |reply| Query::Session { id, reply })
            .await?;
        let (s, subflows) = found.ok_or_else(|| {
            Status::not_found(format!(
                "session {w}:{}:{} does not exist (closed, or never was)",
                id.slot, id.generation
            ))
        })?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(to_pb_session(w, &s)),
            subflows: subflows
                .iter()
                .map(|f| pb::Subflow {
                    client: f.client.to_string(),
                    address_id: u32::from(f.addr_id),
                    backup: f.backup,
                    primary: f.primary,
                    health: f.health.into(),
                    srtt_us: f.srtt_us,
                    min_rtt_us: f.min_rtt_us,
                    rate_bytes_per_second: f.rate,
                    inflight_bytes: f.inflight,
                    bytes_sent: f.bytes_sent,
                    bytes_repaired: f.bytes_repaired,
                })
                .collect(),
        }))
    }

    async fn delete_session(
        &self,
        req: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let (w, id) = self.inner.worker_of(req.into_inner().id.as_ref())?;
        if !self
            .inner
            .ask(w, |reply| Query::Abort { id, reply })
            .await?
        {
            return Err(Status::not_found(format!(
                "session {w}:{}:{} does not exist (closed, or never was)",
                id.slot, id.generation
            )));
        }
        Ok(Response::new(pb::DeleteSessionResponse {}))
    }

    async fn revoke_sessions(
        &self,
        req: Request<pb::RevokeSessionsRequest>,
    ) -> Result<Response<pb::RevokeSessionsResponse>, Status> {
        let dry_run = req.into_inner().dry_run;
        let mut revoked = 0;
        for w in 0..self.inner.control.workers() {
            revoked += self
                .inner
                .ask(w, |reply| Query::Revoke { dry_run, reply })
                .await? as u64;
        }
        Ok(Response::new(pb::RevokeSessionsResponse { revoked }))
    }

    // ---------------------------------------------------------------- observation

    async fn get_statistics(
        &self,
        _req: Request<pb::GetStatisticsRequest>,
    ) -> Result<Response<pb::GetStatisticsResponse>, Status> {
        let reports = self.inner.reports(None, Vec::new()).await?;
        let mut s = pb::GetStatisticsResponse {
            config_generation: self.inner.control.generation(),
            ..Default::default()
        };
        let mut drops = [0u64; hac_core::DropReason::COUNT];
        for r in &reports {
            let c = &r.counters;
            s.connections += r.connections;
            s.convert_requests += c.convert_requests;
            s.convert_errors += c.convert_errors;
            s.established += c.established;
            s.fallbacks += c.fallbacks;
            s.joins_accepted += c.joins_accepted;
            s.joins_refused += c.joins_refused;
            s.denied_client += r.policy.denied_client;
            s.denied_destination += r.policy.denied_destination;
            s.limit_ports += r.policy.limit_ports;
            s.limit_connections += r.policy.limit_connections;
            s.limit_rate += r.policy.limit_rate;
            for (d, n) in drops.iter_mut().zip(c.drops.iter()) {
                *d += n;
            }
        }
        for st in &self.inner.stats {
            s.rx_packets += st.rx_packets.load(Ordering::Relaxed);
            s.tx_packets += st.tx_packets.load(Ordering::Relaxed);
            s.rx_bytes += st.rx_bytes.load(Ordering::Relaxed);
            s.tx_bytes += st.tx_bytes.load(Ordering::Relaxed);
            for (d, a) in drops.iter_mut().zip(st.drops.iter()) {
                *d += a.load(Ordering::Relaxed);
            }
        }
        s.drops = hac_core::DropReason::ALL
            .iter()
            .zip(drops)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| pb::DropCount {
                reason: r.as_str().into(),
                packets: n,
            })
            .collect();
        Ok(Response::new(s))
    }

    type ListWorkersStream = Stream<pb::ListWorkersResponse>;

    async fn list_workers(
        &self,
        _req: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<Self::ListWorkersStream>, Status> {
        let reports = self.inner.reports(None, Vec::new()).await?;
        let out = reports
            .iter()
            .enumerate()
            .map(|(w, r)| {
                let st = self.inner.stats.get(w);
                let load = |f: fn(&WorkerStats) -> &std::sync::atomic::AtomicU64| {
                    st.map_or(0, |s| f(s).load(Ordering::Relaxed))
                };
                pb::ListWorkersResponse {
                    worker: w as u32,
                    lcore: self.inner.boot.lcores.get(w).copied().unwrap_or(0),
                    connections: r.connections,
                    rx_packets: load(|s| &s.rx_packets),
                    tx_packets: load(|s| &s.tx_packets),
                    handoffs: load(|s| &s.handoffs),
                    busy_ms: load(|s| &s.busy_ns) / 1_000_000,
                    config_generation: r.generation,
                }
            })
            .collect();
        Ok(stream(out))
    }

    type ListPortsStream = Stream<pb::ListPortsResponse>;

    async fn list_ports(
        &self,
        _req: Request<pb::ListPortsRequest>,
    ) -> Result<Response<Self::ListPortsStream>, Status> {
        let out = self
            .inner
            .boot
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| pb::ListPortsResponse {
                index: i as u32,
                name: p.name.clone(),
                device: p.device.clone(),
                role: match p.role {
                    crate::config::Role::Access => "access".into(),
                    crate::config::Role::Core => "core".into(),
                },
                addresses: p
                    .addresses
                    .iter()
                    .map(|a| format!("{}/{}", a.addr, a.len))
                    .collect(),
            })
            .collect();
        Ok(stream(out))
    }

    async fn get_running_config(
        &self,
        _req: Request<pb::GetRunningConfigRequest>,
    ) -> Result<Response<pb::GetRunningConfigResponse>, Status> {
        let rc = self.inner.snapshot().await;
        Ok(Response::new(pb::GetRunningConfigResponse {
            json: rc.to_json(),
            generation: self.inner.control.generation(),
            state_file: self.inner.state_file.display().to_string(),
        }))
    }
}
