//! Safe DPDK for hac: EAL initialisation (once per process), mempools, ports with RSS
//! and several queues, rx/tx bursts, [`Mbuf`] as a [`hac_core::PacketBuf`], and lcore
//! launch.
//!
//! Together with `hac-dpdk-sys` this is the only code of the project allowed `unsafe`;
//! every unsafe block says why it is sound in a `// SAFETY:` comment.
//!
//! Lifetimes follow DPDK's process model: the EAL is initialised once and never torn
//! down, and mempools live until the process exits (an mbuf may sit in a queue or a
//! connection's repair cache anywhere, so freeing its pool would be a use-after-free).
//! Ports are owned by a [`Port`]; a queue is driven through the one [`RxQueue`] or
//! [`TxQueue`] handle that exists for it, which a worker lcore owns.

mod eal;
mod error;
mod mbuf;
mod mempool;
mod port;

pub use eal::{Eal, LcoreHandle, lcore_id, main_lcore, socket_id};
pub use error::DpdkError;
pub use mbuf::Mbuf;
pub use mempool::{Mempool, SOCKET_ID_ANY};
pub use port::{LinkStatus, Port, PortConfig, PortStats, RxQueue, TxQueue};

/// The raw bindings, for what the safe API does not cover.
pub use hac_dpdk_sys as sys;

/// Headroom DPDK reserves in front of received data (`RTE_PKTMBUF_HEADROOM`).
#[must_use]
pub fn pktmbuf_headroom() -> u16 {
    // SAFETY: reads an immutable constant the C shim defines.
    unsafe { sys::HAC_RTE_PKTMBUF_HEADROOM }
}

/// The default mbuf data room: 2048 bytes of data plus the headroom
/// (`RTE_MBUF_DEFAULT_BUF_SIZE`).
#[must_use]
pub fn default_data_room() -> u16 {
    // SAFETY: reads an immutable constant the C shim defines.
    unsafe { sys::HAC_RTE_MBUF_DEFAULT_BUF_SIZE }
}
