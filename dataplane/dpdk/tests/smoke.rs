//! DPDK smoke test on real DPDK without NICs or hugepages: `net_ring` (a vdev whose tx
//! and rx share a ring, so what is sent comes back) and `net_null`.
//!
//! One #[test] in this binary: the EAL initialises once per process. Skipped (with a
//! message) when not running as root.

use std::time::{Duration, Instant};

use hac_core::PacketBuf;
use hac_dpdk::{Eal, Mbuf, Mempool, Port, PortConfig, SOCKET_ID_ANY, lcore_id, main_lcore};

const POOL_SIZE: u32 = 2047;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn packet(i: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| i.wrapping_mul(31).wrapping_add(j as u8))
        .collect()
}

#[test]
fn dpdk_smoke() {
    if !is_root() {
        eprintln!("SKIPPED dpdk_smoke: DPDK's EAL needs root here (run as root, as CI does)");
        return;
    }
    let started = Instant::now();
    let args: Vec<String> = [
        "--no-huge",
        "--no-shconf",
        "-m",
        "256",
        "--no-pci",
        "--no-telemetry",
        "-l",
        "0-1",
        "--log-level=lib.eal:warning",
        "--vdev=net_ring0",
        "--vdev=net_null0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();

    // EAL: once per process.
    assert!(Eal::get().is_none());
    let eal = Eal::init(&args).expect("EAL init");
    let again = Eal::init(&args).expect_err("second init must fail");
    assert_eq!(again.errno(), 114, "{again}"); // EALREADY
    assert_eq!(lcore_id(), Some(main_lcore()));
    assert_eq!(eal.worker_lcores(), vec![1]);
    assert_eq!(eal.port_count(), 2);
    let ring_id = eal.port_by_name("net_ring0").expect("net_ring0");
    let null_id = eal.port_by_name("net_null0").expect("net_null0");
    assert_eq!(eal.port_ids().len(), 2);
    assert!(eal.port_by_name("nope0").is_err());

    // Mempool.
    let pool = Mempool::new(
        "smoke",
        POOL_SIZE,
        0,
        hac_dpdk::default_data_room(),
        SOCKET_ID_ANY,
    )
    .expect("mempool");
    assert_eq!(pool.name(), "smoke");
    assert_eq!(pool.available(), POOL_SIZE);
    assert!(Mempool::new("smoke", 63, 0, hac_dpdk::default_data_room(), SOCKET_ID_ANY).is_err());

    // net_ring port, 1 rx / 1 tx.
    let conf = PortConfig {
        rx_ring: 256,
        tx_ring: 256,
        ..PortConfig::default()
    };
    let mut ring = Port::configure(ring_id, &conf, &pool).expect("configure net_ring0");
    assert!(
        Port::configure(ring_id, &conf, &pool).is_err(),
        "one Port per port id"
    );
    assert!(!ring.rss_enabled()); // one queue
    assert_eq!(ring.driver_name().unwrap(), "net_ring");
    assert!(ring.rx_queue(0).is_err(), "queues only on a started port");
    ring.start().expect("start");
    let link = ring.link().expect("link");
    assert!(link.up, "{link:?}");
    let mac = ring.mac_addr().expect("mac");
    eprintln!("net_ring0: port {ring_id}, mac {mac:02x?}, link {link:?}");
    let mut rxq = ring.rx_queue(0).expect("rx queue");
    let mut txq = ring.tx_queue(0).expect("tx queue");
    assert_eq!(
        ring.rx_queue(0).unwrap_err().errno(),
        16,
        "one handle per queue"
    );
    assert!(ring.rx_queue(1).is_err(), "no queue 1");
    assert_eq!(
        ring.stop().unwrap_err().errno(),
        16,
        "no stop while queues are held"
    );

    // tx on net_ring comes back on rx.
    let mut batch: Vec<Mbuf> = (0..4u8)
        .map(|i| {
            pool.alloc_from(&packet(i, 60 + usize::from(i)))
                .expect("alloc")
        })
        .collect();
    assert_eq!(pool.in_use(), 4);
    assert_eq!(txq.tx_burst(&mut batch), 4);
    assert!(batch.is_empty());
    let mut rx = Vec::new();
    assert_eq!(rxq.rx_burst(&mut rx, 32), 4);
    for (i, m) in rx.iter().enumerate() {
        assert_eq!(m.data(), &packet(i as u8, 60 + i)[..], "packet {i}");
        assert_eq!(m.nb_segs(), 1);
        assert_eq!(m.headroom(), usize::from(hac_dpdk::pktmbuf_headroom()));
    }
    let stats = ring.stats().expect("stats");
    assert_eq!((stats.ipackets, stats.opackets), (4, 4), "{stats:?}");

    // PacketBuf on a real mbuf.
    let mut m = rx.remove(0);
    let len = m.data().len();
    let head = m.headroom();
    let tail = m.tailroom();
    assert_eq!(
        head + len + tail,
        usize::from(hac_dpdk::default_data_room())
    );
    assert!(m.prepend(14));
    assert_eq!((m.headroom(), m.data().len()), (head - 14, len + 14));
    m.data_mut()[..14].fill(0xee);
    assert!(m.adj(14));
    assert_eq!(m.data(), &packet(0, 60)[..]);
    assert!(!m.prepend(head + 1));
    assert!(!m.adj(len + 1));
    assert!(m.set_len(20));
    assert_eq!(m.data(), &packet(0, 60)[..20]);
    assert!(m.set_len(len + tail));
    assert_eq!(m.tailroom(), 0);
    assert!(!m.set_len(len + tail + 1));
    assert!(m.set_len(60));
    assert_eq!(m.data(), &packet(0, 60)[..]);

    // share(): one buffer, two handles; freeing both returns it to the pool.
    let avail = pool.available();
    let s = m.share();
    assert_eq!((m.refcnt(), s.refcnt()), (2, 2));
    assert_eq!(m.as_ptr(), s.as_ptr());
    assert!(!m.is_exclusive());
    drop(s);
    assert_eq!(m.refcnt(), 1);
    assert_eq!(
        pool.available(),
        avail,
        "dropping one of two handles frees nothing"
    );
    let s = m.share();
    drop(m);
    assert_eq!(pool.available(), avail);
    assert_eq!(s.refcnt(), 1);
    drop(s);
    assert_eq!(pool.available(), avail + 1, "last handle returns the mbuf");

    // Copy-on-write: mutating a shared handle leaves the other intact.
    let mut a = rx.remove(0);
    let b = a.share();
    let before = pool.available();
    assert!(a.prepend(4));
    a.data_mut()[0] = 0xab;
    assert_ne!(a.as_ptr(), b.as_ptr(), "a copied its buffer");
    assert_eq!(pool.available(), before - 1);
    assert_eq!((a.refcnt(), b.refcnt()), (1, 1));
    assert_eq!(b.data(), &packet(1, 61)[..]);
    assert_eq!(&a.data()[4..], &packet(1, 61)[..]);
    assert_eq!(a.headroom(), b.headroom() - 4, "same layout after the copy");
    drop((a, b));

    // Unsent packets stay with the caller: fill the ring (net_ring's ring holds 1023
    // whatever the descriptor count asked) until the driver refuses.
    Mbuf::free_bulk(&mut rx);
    let mut many = Vec::new();
    pool.alloc_bulk(&mut many, 1000).expect("bulk alloc");
    assert_eq!(pool.in_use(), 1000);
    let sent = txq.tx_burst(&mut many);
    assert_eq!(sent, 1000);
    pool.alloc_bulk(&mut many, 40).expect("bulk alloc");
    let first_unsent = many[23].as_ptr();
    let sent = txq.tx_burst(&mut many);
    assert_eq!(sent, 23, "the ring holds 1023");
    assert_eq!(many.len(), 17, "unsent stay owned");
    assert_eq!(many[0].as_ptr(), first_unsent, "in order");
    Mbuf::free_bulk(&mut many);
    let mut drained = 0;
    while rxq.rx_burst(&mut rx, 64) > 0 {
        drained += rx.len();
        Mbuf::free_bulk(&mut rx);
    }
    assert_eq!(drained, 1023);
    assert_eq!(pool.available(), POOL_SIZE);

    // A worker lcore owns the rx queue: it receives what the main lcore sends.
    let worker = eal
        .launch(1, move || {
            let me = lcore_id();
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while got.len() < 8 && Instant::now() < deadline {
                rxq.rx_burst(&mut got, 32);
            }
            let lens: Vec<usize> = got.iter().map(|m| m.data().len()).collect();
            (me, lens, rxq, got)
        })
        .expect("launch");
    assert_eq!(worker.lcore(), 1);
    assert!(eal.launch(1, || ()).is_err(), "lcore 1 is busy");
    assert!(eal.launch(0, || ()).is_err(), "not on the main lcore");
    let mut batch: Vec<Mbuf> = (0..8u8)
        .map(|i| pool.alloc_from(&packet(i, 100)).unwrap())
        .collect();
    assert_eq!(txq.tx_burst_or_free(&mut batch), 8);
    let (me, lens, rxq, got) = worker.wait().expect("worker ran");
    assert_eq!(me, Some(1));
    assert_eq!(lens, vec![100; 8]);
    drop(got); // mbufs received on lcore 1, freed on the main lcore
    assert_eq!(pool.available(), POOL_SIZE);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // the expected panic below stays quiet
    let panicking = eal.launch(1, || panic!("boom")).expect("launch");
    let result = panicking.wait();
    std::panic::set_hook(hook);
    assert!(result.is_err(), "a panic comes back as Err");
    assert!(
        eal.launch(1, || 7).unwrap().wait().unwrap() == 7,
        "lcore reusable"
    );

    // Stop and close.
    assert!(ring.stop().is_err());
    drop((rxq, txq));
    ring.stop().expect("stop");
    assert!(!ring.is_started());
    ring.close().expect("close");
    // Closing a vdev port releases its port id.
    assert!(eal.port_by_name("net_ring0").is_err());
    assert!(Port::configure(ring_id, &PortConfig::default(), &pool).is_err());

    // net_null: RSS over two queues; rx fabricates packets, tx frees them.
    let conf = PortConfig {
        rx_queues: 2,
        tx_queues: 2,
        rss: true,
        rx_ring: 128,
        tx_ring: 128,
        promiscuous: true,
    };
    let mut null = Port::configure(null_id, &conf, &pool).expect("configure net_null0");
    eprintln!("net_null0: rss {}", null.rss_enabled());
    null.start().expect("start null");
    let mut q1 = null.rx_queue(1).expect("rx 1");
    let mut t1 = null.tx_queue(1).expect("tx 1");
    let n = q1.rx_burst(&mut rx, 16);
    assert_eq!(n, 16);
    assert_eq!(rx[0].data().len(), 64, "net_null's default packet size");
    assert_eq!(t1.tx_burst(&mut rx), 16);
    assert_eq!(null.stats().unwrap().opackets, 16);
    drop((q1, t1));
    null.close().expect("close null");
    assert_eq!(pool.available(), POOL_SIZE);

    let elapsed = started.elapsed();
    eprintln!("dpdk smoke test done in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}
