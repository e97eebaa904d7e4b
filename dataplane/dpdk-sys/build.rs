//! Probes the system DPDK with pkg-config, compiles the C shim with DPDK's own cflags,
//! generates the bindings with bindgen (same cflags) and links DPDK dynamically.

use std::env;
use std::path::PathBuf;

const MIN_VERSION: &str = "22.11";

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=shim/shim.c");
    for var in [
        "PKG_CONFIG",
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_LIBDIR",
        "PKG_CONFIG_SYSROOT_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    // Probe without emitting link lines yet: the static shim must come before the
    // shared DPDK libraries on the link line (Debian's libdpdk.pc adds --as-needed).
    let dpdk = match pkg_config::Config::new()
        .atleast_version(MIN_VERSION)
        .cargo_metadata(false)
        .print_system_libs(false)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => panic!(
            "\n\nhac-dpdk-sys: DPDK >= {MIN_VERSION} not found through pkg-config (libdpdk).\n\
             On Debian 12: apt-get install libdpdk-dev dpdk pkg-config libclang-dev clang\n\
             (install libdpdk-dev; a DPDK built from source needs PKG_CONFIG_PATH set).\n\
             pkg-config said: {e}\n"
        ),
    };

    // The raw cflags, in order: `-include rte_config.h` and `-march=...` matter, and
    // the pkg-config crate's include_paths/defines do not carry them.
    let cflags = pkg_config_cflags();

    // C shim.
    let mut build = cc::Build::new();
    build
        .file("shim/shim.c")
        .include("shim")
        .opt_level(3)
        .warnings(false);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("hac_dpdk_shim");

    // Now the shared libraries, after the shim.
    for path in &dpdk.link_paths {
        println!("cargo:rustc-link-search=native={}", path.display());
    }
    for lib in &dpdk.libs {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    if let Some(first) = dpdk.include_paths.first() {
        println!("cargo:include={}", first.display());
    }
    println!("cargo:version={}", dpdk.version);

    // Bindings.
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header("shim/shim.h")
        .clang_args(&cflags)
        .clang_arg("-Ishim")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .layout_tests(true)
        .derive_default(true)
        .derive_debug(true)
        .impl_debug(false)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .generate_comments(false)
        .formatter(bindgen::Formatter::None)
        // The shim.
        .allowlist_function("hac_.*")
        .allowlist_var("HAC_.*")
        // EAL, lcores, launch, errno, devices.
        .allowlist_function("rte_eal_.*")
        .allowlist_function("rte_lcore.*")
        .allowlist_function("rte_get_main_lcore")
        .allowlist_function("rte_get_next_lcore")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_dev_probe")
        .allowlist_function("rte_dev_remove")
        // ethdev.
        .allowlist_function("rte_eth_.*")
        .allowlist_type("rte_eth_.*")
        .allowlist_var("RTE_ETH_.*")
        // mbufs, mempools, rings.
        .allowlist_function("rte_pktmbuf_.*")
        .allowlist_function("rte_mbuf.*")
        .allowlist_function("rte_mempool_.*")
        .allowlist_function("rte_ring_.*")
        .allowlist_var("RTE_MBUF_.*")
        .allowlist_var("RTE_MAX_.*")
        .allowlist_var("RTE_LCORE_.*")
        .allowlist_var("RTE_PKTMBUF_.*")
        .allowlist_var("RING_F_.*")
        .allowlist_var("RTE_ETHER_.*")
        .allowlist_type("rte_lcore_state_t")
        .allowlist_type("rte_rmt_call_main_t")
        // Functions whose prototypes drag in va_list or other unusable types.
        .blocklist_function("rte_eth_.*_dump.*")
        .blocklist_function("rte_mempool_dump")
        .blocklist_function("rte_mempool_list_dump")
        .blocklist_function("rte_pktmbuf_dump")
        .blocklist_function("rte_ring_dump")
        .blocklist_function("rte_ring_list_dump")
        .blocklist_function("rte_mempool_audit")
        .blocklist_function("rte_eth_dev_priv_dump")
        .blocklist_function("rte_eth_rx_descriptor_dump")
        .blocklist_function("rte_eth_tx_descriptor_dump")
        .generate()
        .expect("hac-dpdk-sys: bindgen failed on the DPDK headers (is libclang-dev installed?)");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}

/// `pkg-config --cflags libdpdk`, split on whitespace.
fn pkg_config_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let out = std::process::Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| {
            panic!("hac-dpdk-sys: running {pkg_config}: {e} (install pkg-config and libdpdk-dev)")
        });
    assert!(
        out.status.success(),
        "hac-dpdk-sys: `{pkg_config} --cflags libdpdk` failed: {} (install libdpdk-dev)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("pkg-config output is UTF-8")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}
