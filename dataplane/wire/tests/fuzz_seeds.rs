//! Replays the checked-in fuzz seed corpus (`fuzz/corpus/<target>/*`) through the
//! same invariant functions the cargo-fuzz targets call, on stable, in `cargo test`.

use std::fs;
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if !path.is_file() {
            continue;
        }
        let data = fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(
            r.is_ok(),
            "{target}: seed {} violates the invariant",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 8, "{target}: only {n} seeds in {}", dir.display());
}

#[test]
fn tcp_options_seeds() {
    replay("tcp_options", hac_wire::fuzzing::tcp_options);
}

#[test]
fn mptcp_option_seeds() {
    replay("mptcp_option", hac_wire::fuzzing::mptcp_option);
}

#[test]
fn convert_message_seeds() {
    replay("convert_message", hac_wire::fuzzing::convert_message);
}

#[test]
fn packet_seeds() {
    replay("packet", hac_wire::fuzzing::packet);
}
