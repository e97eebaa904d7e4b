//! Lists the ports an EAL command line gives, and with `--send` pushes a few frames
//! through each port's queue 0 and counts what comes back (a loopback check).
//!
//! ```text
//! cargo run -p hac-dpdk --example ports -- --no-huge --no-shconf -m 256 --no-pci \
//!     -l 0 --vdev=net_ring0 [--send]
//! ```

use std::time::{Duration, Instant};

use hac_core::PacketBuf;
use hac_dpdk::{Eal, Mbuf, Mempool, Port, PortConfig, SOCKET_ID_ANY};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let send = args.iter().any(|a| a == "--send");
    args.retain(|a| a != "--send");
    let eal = match Eal::init(&args) {
        Ok(eal) => eal,
        Err(e) => {
            eprintln!("EAL init failed: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "lcores: {} (main {}, workers {:?}); ports: {}",
        eal.lcore_count(),
        hac_dpdk::main_lcore(),
        eal.worker_lcores(),
        eal.port_count()
    );
    let pool = Mempool::new(
        "ports",
        2047,
        0,
        hac_dpdk::default_data_room(),
        SOCKET_ID_ANY,
    )
    .expect("mempool");
    for id in eal.port_ids() {
        let mut port = match Port::configure(id, &PortConfig::default(), &pool) {
            Ok(p) => p,
            Err(e) => {
                println!("port {id}: {e}");
                continue;
            }
        };
        port.start().expect("start");
        println!(
            "port {id}: driver {}, mac {:02x?}, link {:?}, socket {}",
            port.driver_name().unwrap_or_default(),
            port.mac_addr().unwrap_or_default(),
            port.link().ok(),
            port.socket_id()
        );
        if send {
            let mut rxq = port.rx_queue(0).expect("rxq");
            let mut txq = port.tx_queue(0).expect("txq");
            // Broadcast frames of an unused EtherType (0x88b5, local experimental).
            let mut frame = vec![0xffu8; 6];
            frame.extend_from_slice(&port.mac_addr().unwrap_or_default());
            frame.extend_from_slice(&[0x88, 0xb5]);
            frame.resize(64, 0x5a);
            let mut batch: Vec<Mbuf> = (0..8).filter_map(|_| pool.alloc_from(&frame)).collect();
            let sent = txq.tx_burst_or_free(&mut batch);
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                rxq.rx_burst(&mut got, 32);
            }
            let same = got.iter().filter(|m| m.data() == &frame[..]).count();
            println!("  sent {sent}, received {} ({same} identical)", got.len());
            Mbuf::free_bulk(&mut got);
            drop((rxq, txq));
        }
        println!("  stats {:?}", port.stats().ok());
        port.close().expect("close");
    }
}
