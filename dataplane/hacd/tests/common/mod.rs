//! Helpers shared by hacd's lab tests (`mod common;` in each test crate; a test
//! crate uses only some of them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The link emulator: `LINKEMU`, else the release build beside this target dir.
pub fn linkemu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LINKEMU") {
        return Some(PathBuf::from(p));
    }
    let hacd = Path::new(env!("CARGO_BIN_EXE_hacd"));
    let p = hacd.parent()?.parent()?.join("release/hac-linkemu");
    p.exists().then_some(p)
}

/// Polls `f` every 20 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
