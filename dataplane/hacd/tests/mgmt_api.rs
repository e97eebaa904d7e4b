//! The management plane end to end without DPDK (issue 6): the real `hacd` binary
//! in `--no-dataplane` mode (workers as threads, no NIC) serving `hac.v1` on a unix
//! socket, driven by the real `hacctl` binary and, where hacctl cannot express a
//! request (an oversized one, health, reflection), by a tonic client.
//!
//! - every RPC through hacctl (`--json`), with the results read back;
//! - invalid changes (malformed prefixes, overlapping pools and subscribers, unknown
//!   subscribers, out-of-range timeouts, oversized requests) are refused with the
//!   field and the reason, and change nothing (the running configuration is compared
//!   before and after);
//! - the configuration survives a restart, including a kill -9 (every accepted
//!   change is saved before it is answered);
//! - gRPC health reports SERVING and reflection lists `hac.v1.Hac` (grpcurl works).
//!
//! Sessions with live connections are tested in hac-core (tests/policy.rs) and in
//! the lab (`lab_mgmt.rs`); here the session RPCs run against empty tables.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hac_proto::v1 as pb;
use hac_proto::v1::hac_client::HacClient;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint, Uri};

/// `hacctl` next to this build's `hacd`, built when missing.
fn hacctl_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let hacd = Path::new(env!("CARGO_BIN_EXE_hacd"));
            let p = hacd.with_file_name("hacctl");
            if !p.exists() {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let mut cmd = Command::new(cargo);
                cmd.args(["build", "-p", "hacctl"]);
                if hacd.parent().and_then(Path::file_name) == Some("release".as_ref()) {
                    cmd.arg("--release");
                }
                let st = cmd.status().expect("cargo build -p hacctl");
                assert!(st.success(), "building hacctl failed");
            }
            p
        })
        .clone()
}

const CONFIG: &str = r#"
[eal]
args = []

[[port]]
name = "dsl"
device = "net_af_packet0,iface=conc-dsl"
role = "access"
addresses = ["198.18.1.1/24", "2001:db8:1::1/64"]

[[port]]
name = "core"
device = "net_af_packet1,iface=conc-core"
role = "core"
addresses = ["198.51.100.1/24", "2001:db8:100::1/64"]

[[route]]
prefix = "0.0.0.0/0"
via = "198.51.100.2"

[converter]
addresses = ["192.0.2.1", "2001:db8:ffff::1"]
port = 5124

[pool]
prefixes = ["203.0.113.0/28", "2001:db8:200::/120"]

[workers]
lcores = [1, 2]

[management]
socket = "@DIR@/hacd.sock"
state_file = "@DIR@/state/state.json"
"#;

/// A `hacd --no-dataplane` in its own directory; killed on drop.
struct Hacd {
    child: Child,
    dir: PathBuf,
}

impl Hacd {
    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hacm-api-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn start(dir: &Path) -> Hacd {
        let cfg = dir.join("hacd.toml");
        std::fs::write(&cfg, CONFIG.replace("@DIR@", &dir.display().to_string())).unwrap();
        let log = std::fs::File::create(dir.join("hacd.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hacd"))
            .arg("--no-dataplane")
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hacd");
        let h = Hacd {
            child,
            dir: dir.to_path_buf(),
        };
        // Ready when the API answers (readiness, not a timing assertion).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if h.socket().exists() && h.ctl(&["mode", "show"]).status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "hacd did not come up:\n{}",
                std::fs::read_to_string(h.dir.join("hacd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        h
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("hacd.sock")
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(hacctl_bin())
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run hacctl")
    }

    /// `hacctl --json ARGS`, which must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ctl(&a);
        assert!(
            out.status.success(),
            "hacctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "hacctl {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `hacctl ARGS`, which must fail: its error message.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            !out.status.success(),
            "hacctl {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn running(&self) -> Value {
        self.json(&["config", "show"])
    }

    /// Kills hacd at once (no clean shutdown).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn client(&self) -> HacClient<Channel> {
        HacClient::new(channel(self.socket()).await)
    }
}

impl Drop for Hacd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn channel(path: PathBuf) -> Channel {
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
        .expect("connect to hacd")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

#[test]
fn every_rpc_through_hacctl() {
    let dir = Hacd::dir("rpc");
    let h = Hacd::start(&dir);

    // Pools.
    let pools = h.json(&["pool", "list"]);
    assert_eq!(pools[0]["name"], "default");
    assert_eq!(
        strs(&pools[0]["prefixes"]),
        ["203.0.113.0/28", "2001:db8:200::/120"]
    );
    h.json(&[
        "pool",
        "add",
        "extra",
        "203.0.113.16/28",
        "2001:db8:300::/120",
    ]);
    let pools = h.json(&["pool", "list"]);
    assert_eq!(pools.as_array().unwrap().len(), 2);
    assert_eq!(pools[1]["ports_in_use"], 0);
    h.json(&["pool", "delete", "extra"]);
    assert_eq!(h.json(&["pool", "list"]).as_array().unwrap().len(), 1);
    let s = h.json(&["pool", "set", "--hold-down", "300", "--ports", "2048-65535"]);
    assert_eq!(s["saved"]["hold_down_seconds"], 300);
    assert_eq!(
        s["active"]["hold_down_seconds"], 300,
        "hold-down applies at once"
    );
    assert_eq!(
        s["active"]["port_low"], 1024,
        "the range applies at restart"
    );
    assert_eq!(s["restart_required"], true);
    let s = h.json(&["pool", "settings"]);
    assert_eq!(s["saved"]["port_low"], 2048);
    assert_eq!(s["paired_by"], "client-address");

    // Policy and destination rules.
    let p = h.json(&[
        "policy",
        "set",
        "--unlisted-clients",
        "deny",
        "--deny-private",
        "on",
        "--max-connections",
        "100",
        "--scheduler",
        "overflow",
        "--primary-access",
        "198.18.1.0/24",
    ]);
    assert_eq!(p["allow_unlisted_clients"], false);
    assert_eq!(p["deny_private_destinations"], true);
    assert_eq!(p["default_limits"]["max_connections"], 100);
    assert_eq!(p["default_scheduler"], "overflow");
    assert_eq!(strs(&p["primary_access"]), ["198.18.1.0/24"]);
    assert_eq!(h.json(&["policy", "show"]), p);
    h.json(&[
        "policy",
        "rule",
        "add",
        "allow",
        "10.20.0.0/16",
        "--comment",
        "partner",
    ]);
    h.json(&["policy", "rule", "add", "deny", "2001:db8:dead::/48"]);
    let rules = h.json(&["policy", "rule", "list"]);
    assert_eq!(rules.as_array().unwrap().len(), 2);
    assert_eq!(rules[0]["prefix"], "10.20.0.0/16");
    assert_eq!(rules[0]["action"], "allow");
    assert_eq!(rules[0]["comment"], "partner");
    let all = h.json(&["policy", "rule", "list", "--all"]);
    let builtin: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["builtin"] == true)
        .collect();
    for p in [
        "192.0.2.1",
        "203.0.113.0/28",
        "127.0.0.0/8",
        "224.0.0.0/4",
        "10.0.0.0/8",
    ] {
        assert!(builtin.iter().any(|r| r["prefix"] == p), "builtin {p}");
    }
    h.json(&["policy", "rule", "delete", "2001:db8:dead::/48"]);
    assert_eq!(
        h.json(&["policy", "rule", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Subscribers.
    let s = h.json(&[
        "subscriber",
        "add",
        "cpe-1",
        "--prefix",
        "198.18.1.2/32",
        "--prefix",
        "198.18.2.2",
        "--max-connections",
        "64",
        "--max-rate",
        "10",
        "--scheduler",
        "failover",
        "--primary-access",
        "198.18.1.2/32",
    ]);
    assert_eq!(strs(&s["prefixes"]), ["198.18.1.2/32", "198.18.2.2/32"]);
    assert_eq!(s["limits"]["max_connections"], 64);
    assert_eq!(s["scheduler"], "failover");
    h.json(&["subscriber", "add", "cpe-2", "--prefix", "198.18.3.0/30"]);
    let s = h.json(&["subscriber", "update", "cpe-2", "--max-ports", "512"]);
    assert_eq!(s["limits"]["max_ports"], 512);
    assert_eq!(
        strs(&s["prefixes"]),
        ["198.18.3.0/30"],
        "update keeps the rest"
    );
    let s = h.json(&["subscriber", "show", "cpe-1"]);
    assert_eq!(s["connections"], 0);
    assert_eq!(s["ports"], 0);
    let list = h.json(&["subscriber", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    h.json(&["subscriber", "delete", "cpe-2"]);
    assert_eq!(h.json(&["subscriber", "list"]).as_array().unwrap().len(), 1);

    // Mode.
    assert_eq!(h.json(&["mode", "show"])["mode"], "single-proxy");
    assert_eq!(h.json(&["mode", "set", "dual-proxy"])["mode"], "dual-proxy");
    assert_eq!(h.json(&["mode", "show"])["mode"], "dual-proxy");
    assert_eq!(h.json(&["pool", "settings"])["paired_by"], "subscriber");

    // Converter.
    let c = h.json(&[
        "converter",
        "set",
        "--port",
        "6124",
        "--syn-ms",
        "1500",
        "--addresses",
        "192.0.2.1",
        "192.0.2.2",
    ]);
    assert_eq!(c["port"], 6124);
    assert_eq!(c["timeouts"]["syn_ms"], 1500);
    assert_eq!(strs(&c["addresses"]), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(h.json(&["converter", "show"]), c);

    // Sessions (empty tables: no NIC), statistics, workers, ports.
    assert_eq!(h.json(&["session", "list"]), Value::Array(Vec::new()));
    assert_eq!(
        h.json(&[
            "session",
            "list",
            "--worker",
            "1",
            "--server",
            "198.51.100.0/24"
        ]),
        Value::Array(Vec::new())
    );
    let err = h.fails(&["session", "show", "0:5:1"]);
    assert!(
        err.contains("not found: session 0:5:1 does not exist"),
        "{err}"
    );
    let err = h.fails(&["session", "delete", "1:0:1"]);
    assert!(err.contains("not found"), "{err}");
    let r = h.json(&["session", "revoke", "--dry-run"]);
    assert_eq!(r["revoked"], 0);
    assert_eq!(h.json(&["session", "revoke"])["revoked"], 0);
    let st = h.json(&["stats"]);
    assert_eq!(st["connections"], 0);
    let generation = st["config_generation"].as_u64().unwrap();
    assert!(
        generation >= 14,
        "every accepted change is a generation: {st}"
    );
    let workers = h.json(&["worker", "list"]);
    assert_eq!(workers.as_array().unwrap().len(), 2);
    assert_eq!(workers[1]["lcore"], 2);
    // Workers take the newest generation between bursts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.json(&["worker", "list"])[0]["config_generation"] != generation {
        assert!(
            Instant::now() < deadline,
            "worker never took generation {generation}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ports = h.json(&["port", "list"]);
    assert_eq!(ports[0]["name"], "dsl");
    assert_eq!(ports[1]["role"], "core");

    // The running configuration is what the state file holds.
    let rc = h.running();
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state/state.json")).unwrap())
            .unwrap();
    assert_eq!(rc, saved);
    assert_eq!(rc["mode"], "dual-proxy");

    // Human-readable output is a table.
    let out = h.ctl(&["subscriber", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("cpe-1"), "{text}");
    drop(h);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn invalid_changes_say_what_and_why_and_change_nothing() {
    let dir = Hacd::dir("invalid");
    let h = Hacd::start(&dir);
    h.json(&["subscriber", "add", "home", "--prefix", "198.18.1.0/24"]);
    let before = h.running();
    let generation = h.json(&["stats"])["config_generation"].clone();
    let cases: &[(&[&str], &str)] = &[
        (
            &["pool", "add", "p", "203.0.113.300/28"],
            "invalid argument: pool.prefixes[0]: `203.0.113.300/28` is not a prefix",
        ),
        (
            &["pool", "add", "p", "203.0.113.0/33"],
            "prefix length must be 0..=32",
        ),
        (
            &["pool", "add", "p", "203.0.113.1/28"],
            "has host bits set (did you mean 203.0.113.0/28?)",
        ),
        (
            &["pool", "add", "p", "203.0.113.8/29"],
            "overlaps 203.0.113.0/28 of pool `default`",
        ),
        (
            &["pool", "add", "default", "198.18.200.0/24"],
            "already exists: pool `default`",
        ),
        (
            &["pool", "add", "p", "192.0.2.0/24"],
            "contains the service address 192.0.2.1",
        ),
        (&["pool", "add", "bad name", "198.18.200.0/24"], "pool.name"),
        (
            &["pool", "delete", "nope"],
            "not found: pool `nope` does not exist",
        ),
        (
            &["pool", "delete", "default"],
            "failed precondition: pool `default` is the last pool",
        ),
        (
            &["pool", "set", "--ports", "3000-2000"],
            "pool_settings.port_low",
        ),
        (&["pool", "set", "--hold-down", "10"], "RFC 6888 REQ-8"),
        (
            &["pool", "set", "--ports", "1-70000"],
            "port_high: 70000 is not a port",
        ),
        (
            &["subscriber", "add", "other", "--prefix", "198.18.1.128/25"],
            "overlaps 198.18.1.0/24 of subscriber `home`",
        ),
        (
            &["subscriber", "add", "home", "--prefix", "198.18.9.0/24"],
            "already exists",
        ),
        (
            &["subscriber", "update", "ghost", "--max-ports", "3"],
            "not found: subscriber `ghost` does not exist",
        ),
        (
            &["subscriber", "delete", "ghost"],
            "not found: subscriber `ghost`",
        ),
        (
            &["subscriber", "show", "ghost"],
            "not found: subscriber `ghost`",
        ),
        (
            &["session", "list", "--subscriber", "ghost"],
            "not found: subscriber `ghost`",
        ),
        (&["session", "list", "--client", "198.18.1.0/40"], "client"),
        (&["session", "show", "9:0:1"], "id.worker: 9 does not exist"),
        (
            &["session", "list", "--limit", "1000000"],
            "limit: at most 100000",
        ),
        (
            &["policy", "rule", "add", "deny", "10.0.0.0/8x"],
            "rule.prefix",
        ),
        (
            &["policy", "rule", "delete", "10.9.0.0/16"],
            "not found: destination rule",
        ),
        (
            &["converter", "set", "--established-s", "60"],
            "converter.timeouts.established_seconds: RFC 5382 REQ-5",
        ),
        (
            &["converter", "set", "--syn-ms", "0"],
            "converter.timeouts.syn_ms",
        ),
        (&["converter", "set", "--port", "0"], "converter.port"),
        (
            &["converter", "set", "--addresses", "192.0.2.1", "bogus"],
            "addresses[1]: `bogus` is not an IP address",
        ),
        (
            &["converter", "set", "--addresses", "203.0.113.1"],
            "contains the service address",
        ),
    ];
    for (args, want) in cases {
        let err = h.fails(args);
        assert!(
            err.contains(want),
            "hacctl {args:?}: {err:?} lacks {want:?}"
        );
    }
    assert_eq!(h.running(), before, "a refused change changes nothing");
    assert_eq!(h.json(&["stats"])["config_generation"], generation);

    // Through the API directly: limits on sizes.
    rt().block_on(async {
        let mut c = h.client().await;
        // Too many prefixes for one subscriber (a small message).
        let many: Vec<pb::Prefix> = (0..300u32)
            .map(|i| pb::Prefix {
                prefix: format!("10.{}.{}.0/24", 100 + i / 256, i % 256),
            })
            .collect();
        let e = c
            .add_subscriber(pb::AddSubscriberRequest {
                subscriber: Some(pb::Subscriber {
                    name: "big".into(),
                    prefixes: many,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("at most 256 prefixes"),
            "{}",
            e.message()
        );
        // An oversized request (more than 256 KiB): refused before it is decoded.
        let huge = pb::AddPoolRequest {
            pool: Some(pb::Pool {
                name: "x".repeat(300 * 1024),
                prefixes: Vec::new(),
            }),
        };
        let e = c.add_pool(huge).await.unwrap_err();
        assert!(
            matches!(
                e.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ),
            "{e:?}"
        );
        // Enum values that do not exist.
        let e = c
            .set_mode(pb::SetModeRequest { mode: 7 })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("mode"), "{}", e.message());
        let e = c
            .add_destination_rule(pb::AddDestinationRuleRequest {
                rule: Some(pb::DestinationRule {
                    prefix: Some(pb::Prefix {
                        prefix: "10.0.0.0/8".into(),
                    }),
                    action: 0,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert!(e.message().contains("rule.action"), "{}", e.message());
    });
    assert_eq!(h.running(), before, "still nothing changed");
    drop(h);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn configuration_survives_a_restart_and_a_kill() {
    let dir = Hacd::dir("restart");
    let h = Hacd::start(&dir);
    h.json(&["pool", "add", "extra", "198.18.200.0/28"]);
    h.json(&[
        "subscriber",
        "add",
        "cpe-1",
        "--prefix",
        "198.18.1.2",
        "--max-connections",
        "8",
    ]);
    h.json(&["policy", "rule", "add", "deny", "198.51.100.99/32"]);
    h.json(&["policy", "set", "--unlisted-clients", "deny"]);
    h.json(&["mode", "set", "dual-proxy"]);
    h.json(&["converter", "set", "--port", "7000"]);
    h.json(&["pool", "set", "--ports", "4096-8191", "--block-size", "64"]);
    assert_eq!(h.json(&["pool", "settings"])["restart_required"], true);
    let before = h.running();
    h.kill();

    let h = Hacd::start(&dir);
    assert_eq!(h.running(), before, "restored from the state file");
    let s = h.json(&["pool", "settings"]);
    assert_eq!(
        s["restart_required"], false,
        "the saved range is active now"
    );
    assert_eq!(s["active"]["port_low"], 4096);
    assert_eq!(s["active"]["block_size"], 64);
    assert_eq!(h.json(&["converter", "show"])["port"], 7000);
    assert_eq!(
        h.json(&["subscriber", "show", "cpe-1"])["limits"]["max_connections"],
        8
    );
    let log = std::fs::read_to_string(dir.join("hacd.log")).unwrap_or_default();
    assert!(log.contains("running configuration restored"), "{log}");
    // No temporary files left next to the state file.
    let names: Vec<String> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["state.json"]);
    drop(h);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn health_and_reflection_answer_for_grpcurl() {
    let dir = Hacd::dir("health");
    let h = Hacd::start(&dir);
    rt().block_on(async {
        let ch = channel(h.socket()).await;
        let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "hac.v1.Hac".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        use tonic_reflection::pb::v1 as refl;
        let mut c = refl::server_reflection_client::ServerReflectionClient::new(ch);
        let req = refl::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                refl::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut resp = c
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let msg = resp.message().await.unwrap().unwrap();
        let Some(refl::server_reflection_response::MessageResponse::ListServicesResponse(l)) =
            msg.message_response
        else {
            panic!("not a service list: {msg:?}")
        };
        let names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
        assert!(names.iter().any(|n| n == "hac.v1.Hac"), "{names:?}");
    });
    drop(h);
    let _ = std::fs::remove_dir_all(dir);
}
