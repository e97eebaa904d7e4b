use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use crate::eal::Eal;
use crate::error::{self, DpdkError};
use crate::mbuf::Mbuf;
use crate::sys;

/// Any NUMA socket (`SOCKET_ID_ANY`).
pub const SOCKET_ID_ANY: i32 = -1;

/// A packet-mbuf pool (`rte_pktmbuf_pool_create`). Cheap to clone (a pointer). Never
/// freed: mbufs from it may outlive any owner (queued, cached for repair), so the pool
/// lives until the process exits.
#[derive(Debug, Clone)]
pub struct Mempool {
    ptr: NonNull<sys::rte_mempool>,
}

// SAFETY: the pool is never freed, and DPDK's mempool operations are thread-safe: the
// default "ring_mp_mc" ops are multi-producer/multi-consumer, and the per-lcore caches
// are only used by the EAL thread of that lcore (threads the EAL did not create have
// lcore id LCORE_ID_ANY and bypass the caches).
unsafe impl Send for Mempool {}
// SAFETY: as for Send; every operation through &Mempool is one of those thread-safe
// calls (alloc, counts, name).
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n_mbufs` mbufs (best `2^k - 1`), with a per-lcore cache of
    /// `cache` (0 or up to 512, `n_mbufs` a multiple of it is best), each with
    /// `data_room` bytes of buffer including the headroom
    /// ([`crate::default_data_room`] = 2048 + 128 suits a 1500-byte MTU), on NUMA
    /// socket `socket` ([`SOCKET_ID_ANY`] or a socket id). Names are unique per process.
    pub fn new(
        name: &str,
        n_mbufs: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Mempool, DpdkError> {
        const OP: &str = "rte_pktmbuf_pool_create";
        Eal::ensure(OP)?;
        if data_room < crate::pktmbuf_headroom() {
            return Err(DpdkError::usage(
                OP,
                error::EINVAL,
                format!("data_room {data_room} is smaller than the mbuf headroom"),
            ));
        }
        let c = CString::new(name)
            .map_err(|_| DpdkError::usage(OP, error::EINVAL, "name contains NUL"))?;
        // SAFETY: the EAL is initialised (checked); c is a valid C string that DPDK
        // copies; the numeric arguments are validated by DPDK (errors via rte_errno).
        let p = unsafe {
            sys::hac_rte_pktmbuf_pool_create(c.as_ptr(), n_mbufs, cache, data_room, socket)
        };
        NonNull::new(p)
            .map(|ptr| Mempool { ptr })
            .ok_or_else(|| DpdkError::from_rte_errno(format!("{OP}({name})")))
    }

    /// An mbuf from the pool (reset: data at the headroom, length 0), or `None` when the
    /// pool is empty.
    #[must_use]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid for the life of the process.
        let m = unsafe { sys::hac_rte_pktmbuf_alloc(self.ptr.as_ptr()) };
        // SAFETY: a non-null result is a fresh mbuf whose only reference is ours.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m.as_ptr()) })
    }

    /// Appends `n` mbufs to `out`, all or none (`ENOMEM`: the pool had fewer).
    pub fn alloc_bulk(&self, out: &mut Vec<Mbuf>, n: usize) -> Result<(), DpdkError> {
        const OP: &str = "rte_pktmbuf_alloc_bulk";
        let count =
            u32::try_from(n).map_err(|_| DpdkError::usage(OP, error::EINVAL, "too many"))?;
        out.reserve(n);
        let len = out.len();
        // SAFETY: `out` has room for n more elements; Mbuf is repr(transparent) over a
        // non-null *mut rte_mbuf, so the spare capacity is a valid array of n
        // *mut rte_mbuf slots for DPDK to fill.
        let ret = unsafe {
            sys::hac_rte_pktmbuf_alloc_bulk(
                self.ptr.as_ptr(),
                out.as_mut_ptr().add(len).cast::<*mut sys::rte_mbuf>(),
                count,
            )
        };
        if ret != 0 {
            return Err(DpdkError::new(OP, error::ENOMEM));
        }
        // SAFETY: on success DPDK wrote n valid, exclusively owned, non-null mbuf
        // pointers into those slots.
        unsafe { out.set_len(len + n) };
        Ok(())
    }

    /// Mbufs currently in the pool (free).
    #[must_use]
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid; the count is a read of its ring and caches.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs currently allocated from the pool.
    #[must_use]
    pub fn in_use(&self) -> u32 {
        // SAFETY: as for available().
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// The pool's name.
    #[must_use]
    pub fn name(&self) -> String {
        // SAFETY: the pool is valid; `name` is a NUL-terminated array inside it that
        // never changes after creation.
        let name = unsafe { CStr::from_ptr((*self.ptr.as_ptr()).name.as_ptr()) };
        name.to_string_lossy().into_owned()
    }

    /// The raw pool pointer.
    #[must_use]
    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_eal() {
        // This unit-test binary never initialises the EAL.
        let e = Mempool::new("p", 63, 0, crate::default_data_room(), SOCKET_ID_ANY).unwrap_err();
        assert_eq!(e.errno(), error::ENODEV, "{e}");
    }
}
