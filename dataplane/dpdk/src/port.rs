use std::cell::Cell;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::eal::Eal;
use crate::error::{self, DpdkError};
use crate::mbuf::Mbuf;
use crate::mempool::Mempool;
use crate::sys;

const MAX_PORTS: usize = sys::RTE_MAX_ETHPORTS as usize;

/// Ports owned by a live [`Port`] (one owner per port id per process).
static PORTS_IN_USE: [AtomicBool; MAX_PORTS] = [const { AtomicBool::new(false) }; MAX_PORTS];

/// How to configure a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Receive queues (one per worker lcore, typically).
    pub rx_queues: u16,
    /// Transmit queues.
    pub tx_queues: u16,
    /// Spread received packets over the rx queues by an IP/TCP/UDP hash (RSS). Applied
    /// only when there is more than one rx queue and the device reports RSS support;
    /// [`Port::rss_enabled`] tells whether it was.
    pub rss: bool,
    /// Descriptors per rx queue (adjusted to the device's limits).
    pub rx_ring: u16,
    /// Descriptors per tx queue (adjusted to the device's limits).
    pub tx_ring: u16,
    /// Receive every frame, whatever its destination MAC.
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rss: true,
            rx_ring: 1024,
            tx_ring: 1024,
            promiscuous: false,
        }
    }
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets dropped by the hardware (rx queues full).
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Receive failures for lack of mbufs.
    pub rx_nombuf: u64,
}

/// Link state (`rte_eth_link_get_nowait`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
    /// Autonegotiated.
    pub autoneg: bool,
}

#[derive(Debug)]
struct PortShared {
    id: u16,
    n_rx: u16,
    n_tx: u16,
    rss: bool,
    started: bool,
    closed: bool,
    rx_taken: Box<[AtomicBool]>,
    tx_taken: Box<[AtomicBool]>,
    // Keeps the rx queues' pool alive (pools are never freed anyway; this documents
    // the dependency).
    _mempool: Mempool,
}

impl PortShared {
    fn shutdown(&mut self) -> Result<(), DpdkError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let mut result = Ok(());
        if self.started {
            self.started = false;
            // SAFETY: the port is a configured, started port we own; no queue handle
            // exists (we are reached through &mut, i.e. the last Arc), so no lcore is
            // in a burst on it.
            let ret = unsafe { sys::rte_eth_dev_stop(self.id) };
            result = DpdkError::check("rte_eth_dev_stop", ret).map(drop);
        }
        // SAFETY: as above; the port is stopped.
        let ret = unsafe { sys::rte_eth_dev_close(self.id) };
        result = result.and(DpdkError::check("rte_eth_dev_close", ret).map(drop));
        PORTS_IN_USE[usize::from(self.id)].store(false, Ordering::Release);
        result
    }
}

impl Drop for PortShared {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A configured Ethernet port, owned: one `Port` per port id in the process. Its queues
/// are driven through [`RxQueue`] and [`TxQueue`] handles, one per queue, taken while
/// the port is started; they keep the port alive, and the port can only be stopped or
/// closed when none is left. Dropping the port (and its queue handles) stops and
/// closes it. Control calls (stats, link, MAC) may run while workers burst.
#[derive(Debug)]
pub struct Port {
    shared: Arc<PortShared>,
    _not_sync: PhantomData<Cell<()>>,
}

impl Port {
    /// Configures port `port_id` with `conf`, receiving into `mempool`: RSS over
    /// IP/TCP/UDP when requested, more than one rx queue and the device supports it;
    /// queue setup on the port's NUMA socket. The port is left stopped.
    pub fn configure(
        port_id: u16,
        conf: &PortConfig,
        mempool: &Mempool,
    ) -> Result<Port, DpdkError> {
        const OP: &str = "configure port";
        Eal::ensure(OP)?;
        let op = format!("{OP} {port_id}");
        // SAFETY: rte_eth_dev_is_valid_port accepts any id.
        let valid = unsafe { sys::rte_eth_dev_is_valid_port(port_id) } != 0;
        if usize::from(port_id) >= MAX_PORTS || !valid {
            return Err(DpdkError::usage(op, error::ENODEV, "no such port"));
        }
        if PORTS_IN_USE[usize::from(port_id)].swap(true, Ordering::AcqRel) {
            return Err(DpdkError::usage(
                op,
                error::EBUSY,
                "the port is already owned by a Port",
            ));
        }
        let result = configure_device(port_id, conf, mempool, &op);
        let rss = match result {
            Ok(rss) => rss,
            Err(e) => {
                PORTS_IN_USE[usize::from(port_id)].store(false, Ordering::Release);
                return Err(e);
            }
        };
        let flags = |n: u16| (0..n).map(|_| AtomicBool::new(false)).collect::<Box<[_]>>();
        Ok(Port {
            shared: Arc::new(PortShared {
                id: port_id,
                n_rx: conf.rx_queues,
                n_tx: conf.tx_queues,
                rss,
                started: false,
                closed: false,
                rx_taken: flags(conf.rx_queues),
                tx_taken: flags(conf.tx_queues),
                _mempool: mempool.clone(),
            }),
            _not_sync: PhantomData,
        })
    }

    /// The port id.
    #[must_use]
    pub fn id(&self) -> u16 {
        self.shared.id
    }

    /// Number of rx queues.
    #[must_use]
    pub fn rx_queues(&self) -> u16 {
        self.shared.n_rx
    }

    /// Number of tx queues.
    #[must_use]
    pub fn tx_queues(&self) -> u16 {
        self.shared.n_tx
    }

    /// Whether RSS spreads received packets over the rx queues.
    #[must_use]
    pub fn rss_enabled(&self) -> bool {
        self.shared.rss
    }

    /// Whether the port is started.
    #[must_use]
    pub fn is_started(&self) -> bool {
        self.shared.started
    }

    /// Starts the port (`rte_eth_dev_start`); a no-op when started.
    pub fn start(&mut self) -> Result<(), DpdkError> {
        if self.shared.started {
            return Ok(());
        }
        let s = Arc::get_mut(&mut self.shared).ok_or_else(|| {
            DpdkError::usage(
                "rte_eth_dev_start",
                error::EBUSY,
                "queue handles outstanding",
            )
        })?;
        // SAFETY: a configured port we own, with all its queues set up.
        let ret = unsafe { sys::rte_eth_dev_start(s.id) };
        DpdkError::check("rte_eth_dev_start", ret)?;
        s.started = true;
        Ok(())
    }

    /// Stops the port (`rte_eth_dev_stop`). Fails with `EBUSY` while any [`RxQueue`] or
    /// [`TxQueue`] handle of it exists (drop them first: stop workers, then ports).
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        const OP: &str = "rte_eth_dev_stop";
        let s = Arc::get_mut(&mut self.shared)
            .ok_or_else(|| DpdkError::usage(OP, error::EBUSY, "queue handles outstanding"))?;
        if !s.started {
            return Ok(());
        }
        // SAFETY: a started port we own with no queue handle left (get_mut), so no
        // burst on it can be running.
        let ret = unsafe { sys::rte_eth_dev_stop(s.id) };
        DpdkError::check(OP, ret)?;
        s.started = false;
        Ok(())
    }

    /// Stops (if started) and closes the port (`rte_eth_dev_close`; a vdev's port id is
    /// released by it). With queue handles outstanding it fails with `EBUSY`, and the
    /// port closes when the last handle is dropped.
    pub fn close(self) -> Result<(), DpdkError> {
        match Arc::try_unwrap(self.shared) {
            Ok(mut s) => s.shutdown(),
            Err(_) => Err(DpdkError::usage(
                "rte_eth_dev_close",
                error::EBUSY,
                "queue handles outstanding; the port closes when the last is dropped",
            )),
        }
    }

    /// The handle of rx queue `queue` (one per queue; the port must be started).
    pub fn rx_queue(&self, queue: u16) -> Result<RxQueue, DpdkError> {
        self.take(queue, true)?;
        Ok(RxQueue {
            shared: Arc::clone(&self.shared),
            queue,
            dropped_chained: 0,
            _not_sync: PhantomData,
        })
    }

    /// The handle of tx queue `queue` (one per queue; the port must be started).
    pub fn tx_queue(&self, queue: u16) -> Result<TxQueue, DpdkError> {
        self.take(queue, false)?;
        Ok(TxQueue {
            shared: Arc::clone(&self.shared),
            queue,
            _not_sync: PhantomData,
        })
    }

    fn take(&self, queue: u16, rx: bool) -> Result<(), DpdkError> {
        let op = format!(
            "{} queue {queue} of port {}",
            if rx { "rx" } else { "tx" },
            self.id()
        );
        if !self.shared.started {
            return Err(DpdkError::usage(
                op,
                error::EINVAL,
                "the port is not started",
            ));
        }
        let taken = if rx {
            &self.shared.rx_taken
        } else {
            &self.shared.tx_taken
        };
        let flag = taken
            .get(usize::from(queue))
            .ok_or_else(|| DpdkError::usage(op.clone(), error::EINVAL, "no such queue"))?;
        if flag.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::usage(
                op,
                error::EBUSY,
                "queue handle already taken",
            ));
        }
        Ok(())
    }

    /// The port's MAC address.
    pub fn mac_addr(&self) -> Result<[u8; 6], DpdkError> {
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: a valid port we own; mac is a valid out pointer.
        let ret = unsafe { sys::rte_eth_macaddr_get(self.id(), &raw mut mac) };
        DpdkError::check("rte_eth_macaddr_get", ret)?;
        Ok(mac.addr_bytes)
    }

    /// The port's counters.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: a valid port we own; s is a valid out pointer.
        let ret = unsafe { sys::rte_eth_stats_get(self.id(), &raw mut s) };
        DpdkError::check("rte_eth_stats_get", ret)?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// The link state, without waiting.
    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: a valid port we own; l is a valid out pointer.
        let ret = unsafe { sys::rte_eth_link_get_nowait(self.id(), &raw mut l) };
        DpdkError::check("rte_eth_link_get_nowait", ret)?;
        Ok(LinkStatus {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() != 0,
            autoneg: l.link_autoneg() != 0,
        })
    }

    /// Turns promiscuous mode on or off.
    pub fn set_promiscuous(&self, on: bool) -> Result<(), DpdkError> {
        // SAFETY: a valid port we own.
        let ret = unsafe {
            if on {
                sys::rte_eth_promiscuous_enable(self.id())
            } else {
                sys::rte_eth_promiscuous_disable(self.id())
            }
        };
        DpdkError::check("rte_eth_promiscuous_enable/disable", ret).map(drop)
    }

    /// The driver's name (`net_ring`, `net_af_packet`, `net_ixgbe`, ...).
    pub fn driver_name(&self) -> Result<String, DpdkError> {
        let info = dev_info(self.id())?;
        if info.driver_name.is_null() {
            return Ok(String::new());
        }
        // SAFETY: driver_name is a NUL-terminated static string of the driver.
        Ok(unsafe { CStr::from_ptr(info.driver_name) }
            .to_string_lossy()
            .into_owned())
    }

    /// The port's NUMA socket (`SOCKET_ID_ANY` when unknown, as for vdevs).
    #[must_use]
    pub fn socket_id(&self) -> i32 {
        // SAFETY: a valid port.
        unsafe { sys::rte_eth_dev_socket_id(self.id()) }
    }
}

fn dev_info(port_id: u16) -> Result<sys::rte_eth_dev_info, DpdkError> {
    // SAFETY: rte_eth_dev_info is a C struct of integers, pointers and arrays, for
    // which all-zero is a valid value.
    let mut info: sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
    // SAFETY: a valid port id; info is a valid out pointer.
    let ret = unsafe { sys::rte_eth_dev_info_get(port_id, &raw mut info) };
    DpdkError::check("rte_eth_dev_info_get", ret)?;
    Ok(info)
}

/// Configures the device and its queues; returns whether RSS is on.
fn configure_device(
    port_id: u16,
    conf: &PortConfig,
    mempool: &Mempool,
    op: &str,
) -> Result<bool, DpdkError> {
    let info = dev_info(port_id)?;
    if conf.rx_queues == 0 || conf.rx_queues > info.max_rx_queues {
        return Err(DpdkError::usage(
            op,
            error::EINVAL,
            format!(
                "{} rx queues requested, the device has 1..={}",
                conf.rx_queues, info.max_rx_queues
            ),
        ));
    }
    if conf.tx_queues == 0 || conf.tx_queues > info.max_tx_queues {
        return Err(DpdkError::usage(
            op,
            error::EINVAL,
            format!(
                "{} tx queues requested, the device has 1..={}",
                conf.tx_queues, info.max_tx_queues
            ),
        ));
    }
    let mut eth_conf = sys::rte_eth_conf::default();
    // SAFETY: reads immutable constants the C shim defines.
    let wanted =
        unsafe { sys::HAC_RTE_ETH_RSS_IP | sys::HAC_RTE_ETH_RSS_TCP | sys::HAC_RTE_ETH_RSS_UDP };
    let rss_hf = wanted & info.flow_type_rss_offloads;
    let rss = conf.rss && conf.rx_queues > 1 && rss_hf != 0;
    if rss {
        eth_conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
        eth_conf.rx_adv_conf.rss_conf.rss_key = std::ptr::null_mut(); // the driver's default key
        eth_conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
    }
    // SAFETY: a valid port, stopped (we own it and never started it); eth_conf is a
    // fully initialised configuration valid for the call.
    let ret = unsafe {
        sys::rte_eth_dev_configure(port_id, conf.rx_queues, conf.tx_queues, &raw const eth_conf)
    };
    DpdkError::check("rte_eth_dev_configure", ret)?;
    let (mut nb_rxd, mut nb_txd) = (conf.rx_ring.max(1), conf.tx_ring.max(1));
    // SAFETY: configured port; valid in/out pointers.
    let ret =
        unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &raw mut nb_rxd, &raw mut nb_txd) };
    DpdkError::check("rte_eth_dev_adjust_nb_rx_tx_desc", ret)?;
    // SAFETY: a valid port.
    let socket = unsafe { sys::rte_eth_dev_socket_id(port_id) };
    // DPDK takes the socket as unsigned, with SOCKET_ID_ANY as (unsigned)-1.
    let socket = socket.cast_unsigned();
    for q in 0..conf.rx_queues {
        // SAFETY: configured port, q < the configured rx queue count; NULL rxconf means
        // the driver's defaults; the pool outlives the port (pools are never freed).
        let ret = unsafe {
            sys::rte_eth_rx_queue_setup(
                port_id,
                q,
                nb_rxd,
                socket,
                std::ptr::null(),
                mempool.as_ptr(),
            )
        };
        DpdkError::check(&format!("rte_eth_rx_queue_setup({q})"), ret)?;
    }
    for q in 0..conf.tx_queues {
        // SAFETY: configured port, q < the configured tx queue count; NULL txconf means
        // the driver's defaults.
        let ret =
            unsafe { sys::rte_eth_tx_queue_setup(port_id, q, nb_txd, socket, std::ptr::null()) };
        DpdkError::check(&format!("rte_eth_tx_queue_setup({q})"), ret)?;
    }
    if conf.promiscuous {
        // SAFETY: a valid, configured port.
        let ret = unsafe { sys::rte_eth_promiscuous_enable(port_id) };
        DpdkError::check("rte_eth_promiscuous_enable", ret)?;
    }
    Ok(rss)
}

/// The receive side of one queue of a started port: the only handle to it, `Send` (a
/// worker lcore owns it) but not `Sync` (DPDK queues are single-consumer).
#[derive(Debug)]
pub struct RxQueue {
    shared: Arc<PortShared>,
    queue: u16,
    dropped_chained: u64,
    _not_sync: PhantomData<Cell<()>>,
}

impl RxQueue {
    /// Receives up to `max` packets (at most 65535), appending them to `out`; returns how
    /// many were appended. Chained (multi-segment) mbufs are linearized, or dropped and
    /// counted in [`RxQueue::dropped_chained`] when they do not fit one segment.
    pub fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let max = u16::try_from(max).unwrap_or(u16::MAX);
        out.reserve(usize::from(max));
        let len = out.len();
        // SAFETY: the port is started and stays so while this handle lives (stop needs
        // every handle gone); queue < its rx queue count and this handle is the queue's
        // only user. `out` has room for max more elements, and Mbuf is
        // repr(transparent) over a non-null *mut rte_mbuf, so the spare capacity is a
        // valid array of max mbuf-pointer slots.
        let n = unsafe {
            sys::hac_rte_eth_rx_burst(
                self.shared.id,
                self.queue,
                out.as_mut_ptr().add(len).cast::<*mut sys::rte_mbuf>(),
                max,
            )
        };
        // SAFETY: the driver wrote n valid mbufs, each handed over to us.
        unsafe { out.set_len(len + usize::from(n)) };
        let mut i = len;
        while i < out.len() {
            if out[i].nb_segs() > 1 && out[i].make_writable().is_err() {
                drop(out.remove(i)); // rare; keeps the arrival order
                self.dropped_chained += 1;
                continue;
            }
            i += 1;
        }
        out.len() - len
    }

    /// The port id.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.shared.id
    }

    /// The queue id.
    #[must_use]
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Chained packets dropped because they did not fit one segment.
    #[must_use]
    pub fn dropped_chained(&self) -> u64 {
        self.dropped_chained
    }
}

impl Drop for RxQueue {
    fn drop(&mut self) {
        self.shared.rx_taken[usize::from(self.queue)].store(false, Ordering::Release);
    }
}

/// The transmit side of one queue of a started port: the only handle to it, `Send` but
/// not `Sync` (DPDK queues are single-producer).
#[derive(Debug)]
pub struct TxQueue {
    shared: Arc<PortShared>,
    queue: u16,
    _not_sync: PhantomData<Cell<()>>,
}

impl TxQueue {
    /// Hands the packets of `pkts` to the driver, in order, as many as it takes (at most
    /// 65535); returns how many. Those leave `pkts`; the rest stay in it, in order, still
    /// owned by the caller (retry, or [`Mbuf::free_bulk`]).
    pub fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let len = pkts.len();
        let n = u16::try_from(len).unwrap_or(u16::MAX);
        if n == 0 {
            return 0;
        }
        // SAFETY: the port is started and stays so while this handle lives; queue <
        // its tx queue count and this handle is the queue's only user. pkts' buffer is
        // an array of n valid mbuf pointers (Mbuf is repr(transparent)).
        let sent = usize::from(unsafe {
            sys::hac_rte_eth_tx_burst(
                self.shared.id,
                self.queue,
                pkts.as_mut_ptr().cast::<*mut sys::rte_mbuf>(),
                n,
            )
        });
        // SAFETY: the driver took ownership of the first `sent` mbufs; shift the rest
        // to the front without dropping the sent ones (they are the driver's now).
        unsafe {
            let p = pkts.as_mut_ptr();
            std::ptr::copy(p.add(sent), p, len - sent);
            pkts.set_len(len - sent);
        }
        sent
    }

    /// [`TxQueue::tx_burst`], then frees what the driver did not take, in bulk; returns
    /// how many were sent. `pkts` is left empty.
    pub fn tx_burst_or_free(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let sent = self.tx_burst(pkts);
        Mbuf::free_bulk(pkts);
        sent
    }

    /// The port id.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.shared.id
    }

    /// The queue id.
    #[must_use]
    pub fn queue(&self) -> u16 {
        self.queue
    }
}

impl Drop for TxQueue {
    fn drop(&mut self) {
        self.shared.tx_taken[usize::from(self.queue)].store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_needs_eal() {
        // This unit-test binary never initialises the EAL; the pool is never touched.
        let e = Mempool::new("x", 63, 0, 2176, -1).unwrap_err();
        assert_eq!(e.errno(), error::ENODEV);
        assert_eq!(PortConfig::default().rx_queues, 1);
    }

    #[test]
    fn queue_handles_are_send() {
        fn send<T: Send>() {}
        send::<RxQueue>();
        send::<TxQueue>();
        send::<Port>();
        send::<Mbuf>();
        send::<Mempool>();
    }
}
