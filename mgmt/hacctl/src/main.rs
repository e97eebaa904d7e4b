//! `hacctl`: the command-line client of hacd's `hac.v1` management API. A pure API
//! client (GoBGP's `gobgp` style): noun-first commands, readable tables by default,
//! `--json` for automation, errors as the server states them (field and reason).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use hac_proto::v1 as pb;
use hac_proto::v1::hac_client::HacClient;
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, Parser)]
#[command(
    name = "hacctl",
    version,
    about = "Configure and observe hacd (the hac.v1 API)"
)]
struct Cli {
    /// hacd's unix socket.
    #[arg(
        long,
        global = true,
        default_value = "/run/hacd/hacd.sock",
        env = "HACCTL_SOCKET"
    )]
    socket: PathBuf,
    /// hacd's TCP address (host:port) instead of the unix socket.
    #[arg(long, global = true, env = "HACCTL_ADDR")]
    addr: Option<String>,
    /// Print JSON (one object, or an array for lists).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Address pools.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Authorization policy and destination rules.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Subscribers: client prefixes, limits, scheduler.
    #[command(subcommand)]
    Subscriber(SubscriberCmd),
    /// single-proxy or dual-proxy.
    #[command(subcommand)]
    Mode(ModeCmd),
    /// Converter service addresses, port and timeouts.
    #[command(subcommand)]
    Converter(ConverterCmd),
    /// Live connections.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Counters summed over the workers.
    Stats,
    /// Workers.
    #[command(subcommand)]
    Worker(ListOnly),
    /// Ports.
    #[command(subcommand)]
    Port(ListOnly),
    /// The running configuration (the state file's content).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Prints a shell completion script.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum ListOnly {
    /// List.
    List,
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Print it.
    Show,
}

#[derive(Debug, Subcommand)]
enum PoolCmd {
    /// Add a pool: `hacctl pool add NAME PREFIX...`.
    Add {
        name: String,
        #[arg(required = true)]
        prefixes: Vec<String>,
    },
    /// Delete a pool.
    Delete { name: String },
    /// List pools.
    List,
    /// Show the shared port settings.
    Settings,
    /// Change the shared port settings (range and block size apply at restart).
    Set {
        /// Port range LOW-HIGH.
        #[arg(long)]
        ports: Option<String>,
        #[arg(long)]
        block_size: Option<u32>,
        #[arg(long)]
        hold_down: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Sched {
    Default,
    Aggregate,
    Overflow,
    Failover,
}

impl Sched {
    fn pb(self) -> i32 {
        (match self {
            Sched::Default => pb::Scheduler::Unspecified,
            Sched::Aggregate => pb::Scheduler::Aggregate,
            Sched::Overflow => pb::Scheduler::Overflow,
            Sched::Failover => pb::Scheduler::Failover,
        }) as i32
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        matches!(self, OnOff::On)
    }
}

#[derive(Debug, Args, Default)]
struct LimitArgs {
    /// Pool ports held at once (0: unlimited).
    #[arg(long)]
    max_ports: Option<u32>,
    /// Live connections (0: unlimited).
    #[arg(long)]
    max_connections: Option<u32>,
    /// New connections per second (0: unlimited).
    #[arg(long)]
    max_rate: Option<u32>,
}

impl LimitArgs {
    fn any(&self) -> bool {
        self.max_ports.is_some() || self.max_connections.is_some() || self.max_rate.is_some()
    }

    fn over(&self, base: Option<pb::Limits>) -> pb::Limits {
        let b = base.unwrap_or_default();
        pb::Limits {
            max_ports: self.max_ports.unwrap_or(b.max_ports),
            max_connections: self.max_connections.unwrap_or(b.max_connections),
            max_new_connections_per_second: self
                .max_rate
                .unwrap_or(b.max_new_connections_per_second),
        }
    }
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Show the policy.
    Show,
    /// Change converter-wide policy settings.
    Set {
        /// Clients in no subscriber's prefixes may use the converter.
        #[arg(long)]
        unlisted_clients: Option<AllowDeny>,
        /// Refuse private destinations (RFC 1918, RFC 6598, link-local, ULA).
        #[arg(long)]
        deny_private: Option<OnOff>,
        #[arg(long)]
        scheduler: Option<Sched>,
        /// Primary access prefixes (replaces the list; `--primary-access none` clears).
        #[arg(long, num_args = 1..)]
        primary_access: Option<Vec<String>>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Destination rules.
    #[command(subcommand)]
    Rule(RuleCmd),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AllowDeny {
    Allow,
    Deny,
}

#[derive(Debug, Subcommand)]
enum RuleCmd {
    /// Add a rule: `hacctl policy rule add allow|deny PREFIX`.
    Add {
        action: AllowDeny,
        prefix: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Delete the rule of a prefix.
    Delete { prefix: String },
    /// List rules.
    List {
        /// Also list the appliance's built-in denials.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SubscriberCmd {
    /// Add a subscriber: `hacctl subscriber add NAME --prefix P [--prefix P]...`.
    Add {
        name: String,
        #[command(flatten)]
        spec: SubscriberArgs,
    },
    /// Change a subscriber (given options replace, others stay).
    Update {
        name: String,
        #[command(flatten)]
        spec: SubscriberArgs,
    },
    /// Delete a subscriber.
    Delete { name: String },
    /// Show one subscriber and its usage.
    Show { name: String },
    /// List subscribers.
    List,
}

#[derive(Debug, Args)]
struct SubscriberArgs {
    /// Client source prefix (repeat for several, e.g. a CPE's DSL and LTE address).
    #[arg(long = "prefix")]
    prefixes: Vec<String>,
    #[arg(long)]
    scheduler: Option<Sched>,
    /// Primary access prefix (repeat for several).
    #[arg(long = "primary-access")]
    primary_access: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Subcommand)]
enum ModeCmd {
    /// Show the mode.
    Show,
    /// Set the mode.
    Set { mode: ModeArg },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    SingleProxy,
    DualProxy,
}

#[derive(Debug, Subcommand)]
enum ConverterCmd {
    /// Show the converter service.
    Show,
    /// Change it.
    Set {
        /// Service addresses (replaces the list).
        #[arg(long, num_args = 1..)]
        addresses: Option<Vec<String>>,
        #[arg(long)]
        port: Option<u32>,
        #[arg(long)]
        syn_ms: Option<u32>,
        #[arg(long)]
        established_s: Option<u32>,
        #[arg(long)]
        transitory_s: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
enum SessionCmd {
    /// List sessions.
    List {
        #[arg(long)]
        subscriber: Option<String>,
        /// Client address or prefix.
        #[arg(long)]
        client: Option<String>,
        /// Server address or prefix.
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        server_port: Option<u32>,
        #[arg(long)]
        worker: Option<u32>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Show one session (ID as WORKER:SLOT:GENERATION).
    Show { id: String },
    /// Abort one session (RST both ways, MP_FASTCLOSE to an MPTCP client).
    Delete { id: String },
    /// Abort the sessions the current policy refuses.
    Revoke {
        #[arg(long)]
        dry_run: bool,
    },
}

fn session_id(s: &str) -> anyhow::Result<pb::SessionId> {
    let parts: Vec<&str> = s.split(':').collect();
    let [w, slot, g] = parts[..] else {
        bail!("session id `{s}`: expected WORKER:SLOT:GENERATION (as `hacctl session list` shows)");
    };
    let n = |x: &str, what: &str| -> anyhow::Result<u32> {
        x.parse()
            .with_context(|| format!("session id `{s}`: {what} `{x}` is not a number"))
    };
    Ok(pb::SessionId {
        worker: n(w, "worker")?,
        slot: n(slot, "slot")?,
        generation: n(g, "generation")?,
    })
}

fn prefixes(v: &[String]) -> Vec<pb::Prefix> {
    v.iter().map(|p| pb::Prefix { prefix: p.clone() }).collect()
}

async fn connect(cli: &Cli) -> anyhow::Result<HacClient<Channel>> {
    let ch = if let Some(a) = &cli.addr {
        let uri = if a.contains("://") {
            a.clone()
        } else {
            format!("http://{a}")
        };
        Endpoint::from_shared(uri)
            .with_context(|| format!("--addr {a}: not HOST:PORT"))?
            .connect()
            .await
            .with_context(|| format!("cannot reach hacd at {a}"))?
    } else {
        let path = cli.socket.clone();
        // The URI is a placeholder: the connector dials the socket.
        Endpoint::from_static("http://hacd")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .with_context(|| {
                format!(
                    "cannot reach hacd at {} (is hacd running with [management]? --socket PATH)",
                    cli.socket.display()
                )
            })?
    };
    Ok(HacClient::new(ch))
}

/// A table: headers, rows.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

fn sched_name(v: i32) -> &'static str {
    match pb::Scheduler::try_from(v) {
        Ok(pb::Scheduler::Aggregate) => "aggregate",
        Ok(pb::Scheduler::Overflow) => "overflow",
        Ok(pb::Scheduler::Failover) => "failover",
        _ => "default",
    }
}

fn mode_name(v: i32) -> &'static str {
    match pb::Mode::try_from(v) {
        Ok(pb::Mode::DualProxy) => "dual-proxy",
        Ok(pb::Mode::SingleProxy) => "single-proxy",
        _ => "unspecified",
    }
}

fn state_name(v: i32) -> &'static str {
    match pb::SessionState::try_from(v) {
        Ok(pb::SessionState::SynSent) => "syn-sent",
        Ok(pb::SessionState::SynAckSent) => "syn-ack-sent",
        Ok(pb::SessionState::Established) => "established",
        Ok(pb::SessionState::ReplyClose) => "reply-close",
        Ok(pb::SessionState::ClientGone) => "client-gone",
        Ok(pb::SessionState::TimeWait) => "time-wait",
        _ => "unknown",
    }
}

fn pstr(v: &[pb::Prefix]) -> Vec<String> {
    v.iter().map(|p| p.prefix.clone()).collect()
}

fn limits_json(l: Option<&pb::Limits>) -> Value {
    match l {
        None => Value::Null,
        Some(l) => json!({
            "max_ports": l.max_ports,
            "max_connections": l.max_connections,
            "max_new_connections_per_second": l.max_new_connections_per_second,
        }),
    }
}

fn limits_text(l: Option<&pb::Limits>) -> String {
    match l {
        None => "default".into(),
        Some(l) => {
            let f = |n: u32| {
                if n == 0 {
                    "-".to_string()
                } else {
                    n.to_string()
                }
            };
            format!(
                "ports {} conns {} rate {}/s",
                f(l.max_ports),
                f(l.max_connections),
                f(l.max_new_connections_per_second)
            )
        }
    }
}

fn subscriber_json(s: &pb::Subscriber) -> Value {
    json!({
        "name": s.name,
        "prefixes": pstr(&s.prefixes),
        "limits": limits_json(s.limits.as_ref()),
        "scheduler": sched_name(s.scheduler),
        "primary_access": pstr(&s.primary_access),
    })
}

fn session_id_text(id: Option<&pb::SessionId>) -> String {
    id.map_or_else(String::new, |i| {
        format!("{}:{}:{}", i.worker, i.slot, i.generation)
    })
}

fn session_json(s: &pb::Session) -> Value {
    json!({
        "id": session_id_text(s.id.as_ref()),
        "state": state_name(s.state),
        "client": s.client,
        "service": s.service,
        "server": s.server,
        "pool": s.pool,
        "subscriber": s.subscriber,
        "mptcp": s.mptcp,
        "fallback": s.fallback,
        "subflows": s.subflows,
        "idle_ms": s.idle_ms,
        "bytes_up": s.bytes_up,
        "bytes_down": s.bytes_down,
    })
}

fn settings_json(s: Option<&pb::PoolSettings>) -> Value {
    s.map_or(Value::Null, |s| {
        json!({
            "port_low": s.port_low,
            "port_high": s.port_high,
            "block_size": s.block_size,
            "hold_down_seconds": s.hold_down_seconds,
        })
    })
}

fn converter_json(c: Option<&pb::Converter>) -> Value {
    c.map_or(Value::Null, |c| {
        let t = c.timeouts.unwrap_or_default();
        json!({
            "addresses": c.addresses,
            "port": c.port,
            "timeouts": {
                "syn_ms": t.syn_ms,
                "established_seconds": t.established_seconds,
                "transitory_seconds": t.transitory_seconds,
            },
        })
    })
}

fn policy_json(p: Option<&pb::Policy>) -> Value {
    p.map_or(Value::Null, |p| {
        json!({
            "allow_unlisted_clients": p.allow_unlisted_clients,
            "deny_private_destinations": p.deny_private_destinations,
            "default_limits": limits_json(p.default_limits.as_ref()),
            "default_scheduler": sched_name(p.default_scheduler),
            "primary_access": pstr(&p.primary_access),
        })
    })
}

/// Prints a JSON value (with --json) or text.
struct Out {
    json: bool,
}

impl Out {
    fn show(&self, v: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print!("{}", text());
        }
    }
}

async fn collect<T>(mut s: tonic::Streaming<T>) -> Result<Vec<T>, tonic::Status> {
    let mut v = Vec::new();
    while let Some(x) = s.message().await? {
        v.push(x);
    }
    Ok(v)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Cmd::Completion { shell } = &cli.cmd {
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "hacctl",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    let out = Out { json: cli.json };
    let mut c = connect(&cli).await?;
    match cli.cmd {
        Cmd::Completion { .. } => {}
        Cmd::Pool(cmd) => match cmd {
            PoolCmd::Add { name, prefixes: p } => {
                let r = c
                    .add_pool(pb::AddPoolRequest {
                        pool: Some(pb::Pool {
                            name,
                            prefixes: prefixes(&p),
                        }),
                    })
                    .await?
                    .into_inner();
                let p = r.pool.unwrap_or_default();
                out.show(
                    json!({"name": p.name, "prefixes": pstr(&p.prefixes)}),
                    || format!("pool {} added: {}\n", p.name, pstr(&p.prefixes).join(" ")),
                );
            }
            PoolCmd::Delete { name } => {
                c.delete_pool(pb::DeletePoolRequest { name: name.clone() })
                    .await?;
                out.show(json!({"deleted": name}), || {
                    format!("pool {name} deleted\n")
                });
            }
            PoolCmd::List => {
                let v = collect(c.list_pools(pb::ListPoolsRequest {}).await?.into_inner()).await?;
                let j = v
                    .iter()
                    .map(|r| {
                        let p = r.pool.clone().unwrap_or_default();
                        json!({"name": p.name, "prefixes": pstr(&p.prefixes), "ports_in_use": r.ports_in_use})
                    })
                    .collect();
                out.show(Value::Array(j), || {
                    let rows: Vec<Vec<String>> = v
                        .iter()
                        .map(|r| {
                            let p = r.pool.clone().unwrap_or_default();
                            vec![
                                p.name,
                                pstr(&p.prefixes).join(" "),
                                r.ports_in_use.to_string(),
                            ]
                        })
                        .collect();
                    table(&["NAME", "PREFIXES", "PORTS IN USE"], &rows)
                });
            }
            PoolCmd::Settings => {
                let r = c
                    .get_pool_settings(pb::GetPoolSettingsRequest {})
                    .await?
                    .into_inner();
                let text = pool_settings_text(
                    r.active.as_ref(),
                    r.saved.as_ref(),
                    r.restart_required,
                    &r.paired_by,
                );
                out.show(
                    json!({
                        "active": settings_json(r.active.as_ref()),
                        "saved": settings_json(r.saved.as_ref()),
                        "restart_required": r.restart_required,
                        "paired_by": r.paired_by,
                    }),
                    || text,
                );
            }
            PoolCmd::Set {
                ports,
                block_size,
                hold_down,
            } => {
                let (lo, hi) = match ports {
                    None => (None, None),
                    Some(p) => {
                        let Some((a, b)) = p.split_once('-') else {
                            bail!("--ports `{p}`: expected LOW-HIGH, e.g. 1024-65535");
                        };
                        let n = |x: &str| {
                            x.trim()
                                .parse::<u32>()
                                .with_context(|| format!("--ports `{p}`: `{x}` is not a port"))
                        };
                        (Some(n(a)?), Some(n(b)?))
                    }
                };
                let r = c
                    .set_pool_settings(pb::SetPoolSettingsRequest {
                        port_low: lo,
                        port_high: hi,
                        block_size,
                        hold_down_seconds: hold_down,
                    })
                    .await?
                    .into_inner();
                let text =
                    pool_settings_text(r.active.as_ref(), r.saved.as_ref(), r.restart_required, "");
                out.show(
                    json!({
                        "active": settings_json(r.active.as_ref()),
                        "saved": settings_json(r.saved.as_ref()),
                        "restart_required": r.restart_required,
                    }),
                    || text,
                );
            }
        },
        Cmd::Policy(cmd) => match cmd {
            PolicyCmd::Show => {
                let p = c
                    .get_policy(pb::GetPolicyRequest {})
                    .await?
                    .into_inner()
                    .policy;
                out.show(policy_json(p.as_ref()), || policy_text(p.as_ref()));
            }
            PolicyCmd::Set {
                unlisted_clients,
                deny_private,
                scheduler,
                primary_access,
                limits,
            } => {
                let current = if limits.any() {
                    c.get_policy(pb::GetPolicyRequest {})
                        .await?
                        .into_inner()
                        .policy
                        .and_then(|p| p.default_limits)
                } else {
                    None
                };
                let (set_primary, primary) = match primary_access {
                    Some(v) if v.len() == 1 && v[0] == "none" => (true, Vec::new()),
                    Some(v) => (true, prefixes(&v)),
                    None => (false, Vec::new()),
                };
                let p = c
                    .set_policy(pb::SetPolicyRequest {
                        allow_unlisted_clients: unlisted_clients
                            .map(|a| matches!(a, AllowDeny::Allow)),
                        deny_private_destinations: deny_private.map(OnOff::on),
                        default_limits: limits.any().then(|| limits.over(current)),
                        default_scheduler: scheduler.map_or(0, Sched::pb),
                        primary_access: primary,
                        set_primary_access: set_primary,
                    })
                    .await?
                    .into_inner()
                    .policy;
                out.show(policy_json(p.as_ref()), || policy_text(p.as_ref()));
            }
            PolicyCmd::Rule(r) => match r {
                RuleCmd::Add {
                    action,
                    prefix,
                    comment,
                } => {
                    let r = c
                        .add_destination_rule(pb::AddDestinationRuleRequest {
                            rule: Some(pb::DestinationRule {
                                prefix: Some(pb::Prefix { prefix }),
                                action: match action {
                                    AllowDeny::Allow => pb::RuleAction::Allow,
                                    AllowDeny::Deny => pb::RuleAction::Deny,
                                } as i32,
                                builtin: false,
                                comment,
                            }),
                        })
                        .await?
                        .into_inner();
                    let rule = r.rule.unwrap_or_default();
                    let p = rule.prefix.map(|p| p.prefix).unwrap_or_default();
                    out.show(
                        json!({"prefix": p, "action": rule_action(rule.action)}),
                        || format!("rule added: {} {p}\n", rule_action(rule.action)),
                    );
                }
                RuleCmd::Delete { prefix } => {
                    c.delete_destination_rule(pb::DeleteDestinationRuleRequest {
                        prefix: Some(pb::Prefix {
                            prefix: prefix.clone(),
                        }),
                    })
                    .await?;
                    out.show(json!({"deleted": prefix}), || {
                        format!("rule for {prefix} deleted\n")
                    });
                }
                RuleCmd::List { all } => {
                    let v = collect(
                        c.list_destination_rules(pb::ListDestinationRulesRequest {
                            include_builtin: all,
                        })
                        .await?
                        .into_inner(),
                    )
                    .await?;
                    let rules: Vec<pb::DestinationRule> =
                        v.into_iter().filter_map(|r| r.rule).collect();
                    let j = rules
                        .iter()
                        .map(|r| {
                            json!({
                                "prefix": r.prefix.as_ref().map(|p| p.prefix.clone()),
                                "action": rule_action(r.action),
                                "builtin": r.builtin,
                                "comment": r.comment,
                            })
                        })
                        .collect();
                    out.show(Value::Array(j), || {
                        let rows: Vec<Vec<String>> = rules
                            .iter()
                            .map(|r| {
                                vec![
                                    r.prefix
                                        .as_ref()
                                        .map(|p| p.prefix.clone())
                                        .unwrap_or_default(),
                                    rule_action(r.action).into(),
                                    if r.builtin { "builtin" } else { "operator" }.into(),
                                    r.comment.clone(),
                                ]
                            })
                            .collect();
                        table(&["PREFIX", "ACTION", "SOURCE", "COMMENT"], &rows)
                    });
                }
            },
        },
        Cmd::Subscriber(cmd) => match cmd {
            SubscriberCmd::Add { name, spec } => {
                if spec.prefixes.is_empty() {
                    bail!("subscriber add {name}: at least one --prefix is required");
                }
                let s = pb::Subscriber {
                    name,
                    prefixes: prefixes(&spec.prefixes),
                    limits: spec.limits.any().then(|| spec.limits.over(None)),
                    scheduler: spec.scheduler.map_or(0, Sched::pb),
                    primary_access: prefixes(&spec.primary_access),
                };
                let r = c
                    .add_subscriber(pb::AddSubscriberRequest {
                        subscriber: Some(s),
                    })
                    .await?
                    .into_inner()
                    .subscriber
                    .unwrap_or_default();
                out.show(subscriber_json(&r), || {
                    format!("subscriber {} added\n", r.name)
                });
            }
            SubscriberCmd::Update { name, spec } => {
                let cur = c
                    .get_subscriber(pb::GetSubscriberRequest { name: name.clone() })
                    .await?
                    .into_inner()
                    .subscriber
                    .unwrap_or_default();
                let s = pb::Subscriber {
                    name,
                    prefixes: if spec.prefixes.is_empty() {
                        cur.prefixes
                    } else {
                        prefixes(&spec.prefixes)
                    },
                    limits: if spec.limits.any() {
                        Some(spec.limits.over(cur.limits))
                    } else {
                        cur.limits
                    },
                    scheduler: spec.scheduler.map_or(cur.scheduler, Sched::pb),
                    primary_access: if spec.primary_access.is_empty() {
                        cur.primary_access
                    } else {
                        prefixes(&spec.primary_access)
                    },
                };
                let r = c
                    .update_subscriber(pb::UpdateSubscriberRequest {
                        subscriber: Some(s),
                    })
                    .await?
                    .into_inner()
                    .subscriber
                    .unwrap_or_default();
                out.show(subscriber_json(&r), || {
                    format!("subscriber {} updated\n", r.name)
                });
            }
            SubscriberCmd::Delete { name } => {
                c.delete_subscriber(pb::DeleteSubscriberRequest { name: name.clone() })
                    .await?;
                out.show(json!({"deleted": name}), || {
                    format!("subscriber {name} deleted\n")
                });
            }
            SubscriberCmd::Show { name } => {
                let r = c
                    .get_subscriber(pb::GetSubscriberRequest { name })
                    .await?
                    .into_inner();
                let s = r.subscriber.unwrap_or_default();
                let mut j = subscriber_json(&s);
                j["connections"] = json!(r.connections);
                j["ports"] = json!(r.ports);
                out.show(j, || {
                    format!(
                        "name:           {}\nprefixes:       {}\nlimits:         {}\nscheduler:      {}\nprimary access: {}\nconnections:    {}\nports:          {}\n",
                        s.name,
                        pstr(&s.prefixes).join(" "),
                        limits_text(s.limits.as_ref()),
                        sched_name(s.scheduler),
                        pstr(&s.primary_access).join(" "),
                        r.connections,
                        r.ports
                    )
                });
            }
            SubscriberCmd::List => {
                let v = collect(
                    c.list_subscribers(pb::ListSubscribersRequest {})
                        .await?
                        .into_inner(),
                )
                .await?;
                let subs: Vec<pb::Subscriber> =
                    v.into_iter().filter_map(|r| r.subscriber).collect();
                out.show(
                    Value::Array(subs.iter().map(subscriber_json).collect()),
                    || {
                        let rows: Vec<Vec<String>> = subs
                            .iter()
                            .map(|s| {
                                vec![
                                    s.name.clone(),
                                    pstr(&s.prefixes).join(" "),
                                    limits_text(s.limits.as_ref()),
                                    sched_name(s.scheduler).into(),
                                ]
                            })
                            .collect();
                        table(&["NAME", "PREFIXES", "LIMITS", "SCHEDULER"], &rows)
                    },
                );
            }
        },
        Cmd::Mode(cmd) => {
            let m = match cmd {
                ModeCmd::Show => c.get_mode(pb::GetModeRequest {}).await?.into_inner().mode,
                ModeCmd::Set { mode } => {
                    c.set_mode(pb::SetModeRequest {
                        mode: match mode {
                            ModeArg::SingleProxy => pb::Mode::SingleProxy,
                            ModeArg::DualProxy => pb::Mode::DualProxy,
                        } as i32,
                    })
                    .await?
                    .into_inner()
                    .mode
                }
            };
            out.show(json!({"mode": mode_name(m)}), || {
                format!("{}\n", mode_name(m))
            });
        }
        Cmd::Converter(cmd) => {
            let conv = match cmd {
                ConverterCmd::Show => {
                    c.get_converter(pb::GetConverterRequest {})
                        .await?
                        .into_inner()
                        .converter
                }
                ConverterCmd::Set {
                    addresses,
                    port,
                    syn_ms,
                    established_s,
                    transitory_s,
                } => {
                    c.set_converter(pb::SetConverterRequest {
                        set_addresses: addresses.is_some(),
                        addresses: addresses.unwrap_or_default(),
                        port,
                        syn_ms,
                        established_seconds: established_s,
                        transitory_seconds: transitory_s,
                    })
                    .await?
                    .into_inner()
                    .converter
                }
            };
            out.show(converter_json(conv.as_ref()), || {
                let c = conv.clone().unwrap_or_default();
                let t = c.timeouts.unwrap_or_default();
                format!(
                    "addresses:   {}\nport:        {}\nsyn timeout: {} ms\nestablished: {} s\ntransitory:  {} s\n",
                    c.addresses.join(" "),
                    c.port,
                    t.syn_ms,
                    t.established_seconds,
                    t.transitory_seconds
                )
            });
        }
        Cmd::Session(cmd) => match cmd {
            SessionCmd::List {
                subscriber,
                client,
                server,
                server_port,
                worker,
                limit,
            } => {
                let v = collect(
                    c.list_sessions(pb::ListSessionsRequest {
                        subscriber: subscriber.unwrap_or_default(),
                        client: client.unwrap_or_default(),
                        server: server.unwrap_or_default(),
                        server_port: server_port.unwrap_or(0),
                        worker,
                        limit,
                    })
                    .await?
                    .into_inner(),
                )
                .await?;
                let ss: Vec<pb::Session> = v.into_iter().filter_map(|r| r.session).collect();
                out.show(Value::Array(ss.iter().map(session_json).collect()), || {
                    let rows: Vec<Vec<String>> = ss
                        .iter()
                        .map(|s| {
                            vec![
                                session_id_text(s.id.as_ref()),
                                state_name(s.state).into(),
                                s.client.clone(),
                                s.server.clone(),
                                s.pool.clone(),
                                if s.subscriber.is_empty() {
                                    "-".into()
                                } else {
                                    s.subscriber.clone()
                                },
                                s.subflows.to_string(),
                                s.bytes_up.to_string(),
                                s.bytes_down.to_string(),
                            ]
                        })
                        .collect();
                    table(
                        &[
                            "ID",
                            "STATE",
                            "CLIENT",
                            "SERVER",
                            "POOL",
                            "SUBSCRIBER",
                            "SUBFLOWS",
                            "UP",
                            "DOWN",
                        ],
                        &rows,
                    )
                });
            }
            SessionCmd::Show { id } => {
                let r = c
                    .get_session(pb::GetSessionRequest {
                        id: Some(session_id(&id)?),
                    })
                    .await?
                    .into_inner();
                let s = r.session.unwrap_or_default();
                let mut j = session_json(&s);
                j["subflows"] = Value::Array(
                    r.subflows
                        .iter()
                        .map(|f| {
                            json!({
                                "client": f.client, "address_id": f.address_id,
                                "backup": f.backup, "primary": f.primary, "health": f.health,
                                "srtt_us": f.srtt_us, "min_rtt_us": f.min_rtt_us,
                                "rate_bytes_per_second": f.rate_bytes_per_second,
                                "inflight_bytes": f.inflight_bytes, "bytes_sent": f.bytes_sent,
                                "bytes_repaired": f.bytes_repaired,
                            })
                        })
                        .collect(),
                );
                out.show(j, || {
                    let mut t = format!(
                        "id:         {}\nstate:      {}\nclient:     {}\nservice:    {}\nserver:     {}\npool:       {}\nsubscriber: {}\nmptcp:      {}{}\nidle:       {} ms\nbytes up:   {}\nbytes down: {}\n\n",
                        session_id_text(s.id.as_ref()),
                        state_name(s.state),
                        s.client,
                        s.service,
                        s.server,
                        s.pool,
                        if s.subscriber.is_empty() { "-" } else { &s.subscriber },
                        s.mptcp,
                        if s.fallback { " (fell back to TCP)" } else { "" },
                        s.idle_ms,
                        s.bytes_up,
                        s.bytes_down
                    );
                    let rows: Vec<Vec<String>> = r
                        .subflows
                        .iter()
                        .map(|f| {
                            vec![
                                f.client.clone(),
                                f.address_id.to_string(),
                                f.health.clone(),
                                if f.primary { "yes" } else { "no" }.into(),
                                if f.backup { "yes" } else { "no" }.into(),
                                f.srtt_us.to_string(),
                                f.bytes_sent.to_string(),
                                f.bytes_repaired.to_string(),
                            ]
                        })
                        .collect();
                    t.push_str(&table(
                        &["SUBFLOW", "ADDR-ID", "HEALTH", "PRIMARY", "BACKUP", "SRTT-US", "SENT", "REPAIRED"],
                        &rows,
                    ));
                    t
                });
            }
            SessionCmd::Delete { id } => {
                c.delete_session(pb::DeleteSessionRequest {
                    id: Some(session_id(&id)?),
                })
                .await?;
                out.show(json!({"deleted": id}), || format!("session {id} aborted\n"));
            }
            SessionCmd::Revoke { dry_run } => {
                let r = c
                    .revoke_sessions(pb::RevokeSessionsRequest { dry_run })
                    .await?
                    .into_inner();
                out.show(json!({"revoked": r.revoked, "dry_run": dry_run}), || {
                    if dry_run {
                        format!("{} sessions would be revoked\n", r.revoked)
                    } else {
                        format!("{} sessions revoked\n", r.revoked)
                    }
                });
            }
        },
        Cmd::Stats => {
            let s = c
                .get_statistics(pb::GetStatisticsRequest {})
                .await?
                .into_inner();
            let pairs: Vec<(&str, u64)> = vec![
                ("connections", s.connections),
                ("convert_requests", s.convert_requests),
                ("convert_errors", s.convert_errors),
                ("established", s.established),
                ("fallbacks", s.fallbacks),
                ("joins_accepted", s.joins_accepted),
                ("joins_refused", s.joins_refused),
                ("denied_client", s.denied_client),
                ("denied_destination", s.denied_destination),
                ("limit_ports", s.limit_ports),
                ("limit_connections", s.limit_connections),
                ("limit_rate", s.limit_rate),
                ("rx_packets", s.rx_packets),
                ("tx_packets", s.tx_packets),
                ("rx_bytes", s.rx_bytes),
                ("tx_bytes", s.tx_bytes),
                ("config_generation", s.config_generation),
            ];
            let mut j = serde_json::Map::new();
            for (k, v) in &pairs {
                j.insert((*k).into(), json!(v));
            }
            let drops: serde_json::Map<String, Value> = s
                .drops
                .iter()
                .map(|d| (d.reason.clone(), json!(d.packets)))
                .collect();
            j.insert("drops".into(), Value::Object(drops));
            out.show(Value::Object(j), || {
                let mut rows: Vec<Vec<String>> = pairs
                    .iter()
                    .map(|(k, v)| vec![(*k).to_string(), v.to_string()])
                    .collect();
                for d in &s.drops {
                    rows.push(vec![format!("drop {}", d.reason), d.packets.to_string()]);
                }
                table(&["COUNTER", "VALUE"], &rows)
            });
        }
        Cmd::Worker(ListOnly::List) => {
            let v = collect(
                c.list_workers(pb::ListWorkersRequest {})
                    .await?
                    .into_inner(),
            )
            .await?;
            let j = v
                .iter()
                .map(|w| {
                    json!({"worker": w.worker, "lcore": w.lcore, "connections": w.connections,
                        "rx_packets": w.rx_packets, "tx_packets": w.tx_packets,
                        "handoffs": w.handoffs, "busy_ms": w.busy_ms,
                        "config_generation": w.config_generation})
                })
                .collect();
            out.show(Value::Array(j), || {
                let rows: Vec<Vec<String>> = v
                    .iter()
                    .map(|w| {
                        vec![
                            w.worker.to_string(),
                            w.lcore.to_string(),
                            w.connections.to_string(),
                            w.rx_packets.to_string(),
                            w.tx_packets.to_string(),
                            w.handoffs.to_string(),
                            w.busy_ms.to_string(),
                            w.config_generation.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "WORKER",
                        "LCORE",
                        "CONNECTIONS",
                        "RX",
                        "TX",
                        "HANDOFFS",
                        "BUSY-MS",
                        "GENERATION",
                    ],
                    &rows,
                )
            });
        }
        Cmd::Port(ListOnly::List) => {
            let v = collect(c.list_ports(pb::ListPortsRequest {}).await?.into_inner()).await?;
            let j = v
                .iter()
                .map(|p| json!({"index": p.index, "name": p.name, "device": p.device, "role": p.role, "addresses": p.addresses}))
                .collect();
            out.show(Value::Array(j), || {
                let rows: Vec<Vec<String>> = v
                    .iter()
                    .map(|p| {
                        vec![
                            p.index.to_string(),
                            p.name.clone(),
                            p.role.clone(),
                            p.device.clone(),
                            p.addresses.join(" "),
                        ]
                    })
                    .collect();
                table(&["INDEX", "NAME", "ROLE", "DEVICE", "ADDRESSES"], &rows)
            });
        }
        Cmd::Config(ConfigCmd::Show) => {
            let r = c
                .get_running_config(pb::GetRunningConfigRequest {})
                .await?
                .into_inner();
            if cli.json {
                println!("{}", r.json);
            } else {
                println!(
                    "# generation {}, saved in {}\n{}",
                    r.generation, r.state_file, r.json
                );
            }
        }
    }
    Ok(())
}

fn rule_action(v: i32) -> &'static str {
    match pb::RuleAction::try_from(v) {
        Ok(pb::RuleAction::Allow) => "allow",
        Ok(pb::RuleAction::Deny) => "deny",
        _ => "unspecified",
    }
}

fn pool_settings_text(
    active: Option<&pb::PoolSettings>,
    saved: Option<&pb::PoolSettings>,
    restart: bool,
    paired_by: &str,
) -> String {
    let f = |s: Option<&pb::PoolSettings>| {
        s.map_or_else(String::new, |s| {
            format!(
                "ports {}-{}, blocks of {}, hold-down {} s",
                s.port_low, s.port_high, s.block_size, s.hold_down_seconds
            )
        })
    };
    let mut t = format!("active: {}\nsaved:  {}\n", f(active), f(saved));
    if restart {
        t.push_str("the saved port range or block size applies at the next restart\n");
    }
    if !paired_by.is_empty() {
        t.push_str(&format!("paired pooling by {paired_by}\n"));
    }
    t
}

fn policy_text(p: Option<&pb::Policy>) -> String {
    let p = p.cloned().unwrap_or_default();
    format!(
        "unlisted clients:     {}\ndeny private dests:   {}\ndefault limits:       {}\ndefault scheduler:    {}\nprimary access:       {}\n",
        if p.allow_unlisted_clients {
            "allow"
        } else {
            "deny"
        },
        if p.deny_private_destinations {
            "on"
        } else {
            "off"
        },
        limits_text(p.default_limits.as_ref()),
        sched_name(p.default_scheduler),
        pstr(&p.primary_access).join(" ")
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hacctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A gRPC error: its code and the server's message (field: reason).
            if let Some(s) = e.downcast_ref::<tonic::Status>() {
                eprintln!("hacctl: {}: {}", code_name(s.code()), s.message());
            } else {
                eprintln!("hacctl: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn code_name(c: tonic::Code) -> &'static str {
    match c {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::FailedPrecondition => "failed precondition",
        tonic::Code::ResourceExhausted => "resource exhausted",
        tonic::Code::OutOfRange => "out of range",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::Internal => "internal error",
        _ => "error",
    }
}
