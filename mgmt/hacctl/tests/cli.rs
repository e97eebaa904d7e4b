//! hacctl's own behaviour, without a server: completion scripts, argument errors
//! that say what is wrong, and a clear error when hacd is not there. (The API
//! itself is tested through a real hacd in dataplane/hacd/tests/mgmt_api.rs.)

use std::process::Command;

fn hacctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hacctl"))
        .args(args)
        .env_remove("HACCTL_SOCKET")
        .env_remove("HACCTL_ADDR")
        .output()
        .expect("run hacctl")
}

#[test]
fn completion_scripts_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = hacctl(&["completion", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("hacctl"), "{shell}");
        assert!(text.contains("subscriber"), "{shell}");
    }
}

#[test]
fn a_missing_server_is_named() {
    let out = hacctl(&["--socket", "/nonexistent/hacd.sock", "stats"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach hacd at /nonexistent/hacd.sock"),
        "{err}"
    );
}

#[test]
fn a_malformed_session_id_is_explained() {
    let out = hacctl(&[
        "--socket",
        "/nonexistent/hacd.sock",
        "session",
        "show",
        "0:x",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Either the id or the socket is reported; the id is checked once connected.
    assert!(err.contains("hacctl:"), "{err}");
    let out = hacctl(&["mode", "set", "triple-proxy"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("single-proxy") && err.contains("dual-proxy"),
        "{err}"
    );
}
