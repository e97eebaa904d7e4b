use std::fmt;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use hac_core::PacketBuf;

use crate::error::{self, DpdkError};
use crate::mempool::Mempool;
use crate::sys;

/// An owned handle to a packet mbuf. Dropping it frees it (`rte_pktmbuf_free`: the
/// buffer returns to its pool when the last handle goes).
///
/// As a [`PacketBuf`] it covers the first segment; mbufs received through
/// [`crate::RxQueue`] are always single-segment. [`PacketBuf::share`] is zero-copy (the
/// reference count goes up), and mutation is copy-on-write: a handle whose buffer is
/// shared copies it into a fresh mbuf of the same pool (same headroom) before its first
/// change, so every handle keeps value semantics, like `VecPacket`'s clone, and nothing
/// writes to bytes another handle (or a NIC's tx ring) may be reading.
#[repr(transparent)]
pub struct Mbuf {
    ptr: NonNull<sys::rte_mbuf>,
}

// SAFETY: an Mbuf is the unique owner of one reference to the mbuf; DPDK mbufs carry no
// thread affinity (rte_pktmbuf_free returns a buffer to its pool from any thread: the
// pool is multi-producer, see Mempool). Other handles to the same buffer (share()) only
// read it and drop their reference with an atomic decrement (RTE_MBUF_REFCNT_ATOMIC is
// set in this DPDK build); every mutation first checks, with acquire ordering, that the
// reference is exclusive, and copies otherwise. So moving a handle to another lcore
// cannot create a data race. It is not Sync: share() may update the reference count
// non-atomically when it is 1, which is only sound from the owning thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of one reference to `m`.
    ///
    /// # Safety
    /// `m` must be a valid, non-null packet mbuf from a pool that outlives it, and the
    /// caller must own the reference it hands over (it must not be freed elsewhere).
    #[must_use]
    pub unsafe fn from_raw(m: *mut sys::rte_mbuf) -> Mbuf {
        debug_assert!(!m.is_null());
        Mbuf {
            // SAFETY: non-null per the caller's contract.
            ptr: unsafe { NonNull::new_unchecked(m) },
        }
    }

    /// Gives up ownership (for a raw tx burst or a ring); [`Mbuf::from_raw`] takes it
    /// back.
    #[must_use]
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        ManuallyDrop::new(self).ptr.as_ptr()
    }

    /// The raw mbuf.
    #[must_use]
    pub fn as_ptr(&self) -> *const sys::rte_mbuf {
        self.ptr.as_ptr()
    }

    /// Length of the first segment's data.
    #[must_use]
    pub fn len(&self) -> usize {
        // SAFETY: self.ptr is a valid mbuf we hold a reference to (type invariant).
        usize::from(unsafe { sys::hac_rte_pktmbuf_data_len(self.ptr.as_ptr()) })
    }

    /// Whether the data is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of segments (1 for anything received through this crate).
    #[must_use]
    pub fn nb_segs(&self) -> u16 {
        // SAFETY: valid mbuf (type invariant).
        unsafe { sys::hac_rte_pktmbuf_nb_segs(self.ptr.as_ptr()) }
    }

    /// The buffer's reference count (handles sharing it).
    #[must_use]
    pub fn refcnt(&self) -> u16 {
        // SAFETY: valid mbuf (type invariant); an atomic load.
        unsafe { sys::hac_rte_mbuf_refcnt_read_acquire(self.ptr.as_ptr()) }
    }

    /// Whether this handle is the only one to the data (mutation will not copy).
    #[must_use]
    pub fn is_exclusive(&self) -> bool {
        // SAFETY: valid mbuf (type invariant); atomic load plus a flags read.
        unsafe { sys::hac_rte_mbuf_is_exclusive(self.ptr.as_ptr()) != 0 }
    }

    /// The port it was received on.
    #[must_use]
    pub fn port(&self) -> u16 {
        // SAFETY: valid mbuf (type invariant).
        unsafe { sys::hac_rte_mbuf_port(self.ptr.as_ptr()) }
    }

    /// The NIC's RSS hash, when the device computed one.
    #[must_use]
    pub fn rss_hash(&self) -> Option<u32> {
        // SAFETY: valid mbuf (type invariant).
        let flags = unsafe { sys::hac_rte_mbuf_ol_flags(self.ptr.as_ptr()) };
        if flags & u64::from(sys::RTE_MBUF_F_RX_RSS_HASH) == 0 {
            return None;
        }
        // SAFETY: valid mbuf; the flag says hash.rss holds the RSS hash.
        Some(unsafe { sys::hac_rte_mbuf_rss_hash(self.ptr.as_ptr()) })
    }

    /// The pool it belongs to.
    #[must_use]
    pub fn pool_ptr(&self) -> *mut sys::rte_mempool {
        // SAFETY: valid mbuf (type invariant).
        unsafe { sys::hac_rte_mbuf_pool(self.ptr.as_ptr()) }
    }

    /// Makes this handle the only one to its data and the data a single segment:
    /// copies a shared buffer into a fresh mbuf from the same pool (same headroom), and
    /// linearizes a chained one. Fails (changing nothing) when the pool is empty or a
    /// chain does not fit the first segment.
    pub fn make_writable(&mut self) -> Result<(), DpdkError> {
        if !self.is_exclusive() {
            // SAFETY: valid mbuf; the shim reads it (shared reads are fine) and returns
            // a fresh exclusive copy or NULL.
            let c = unsafe { sys::hac_rte_pktmbuf_copy_same_layout(self.ptr.as_ptr()) };
            let Some(c) = NonNull::new(c) else {
                return Err(DpdkError::usage(
                    "mbuf copy-on-write",
                    error::ENOMEM,
                    "the mbuf's pool is empty (or the shared mbuf is chained)",
                ));
            };
            // Replacing self drops the old handle: our reference to the shared buffer
            // is released with an atomic decrement.
            *self = Mbuf { ptr: c };
        }
        if self.nb_segs() > 1 {
            // SAFETY: valid, exclusively owned mbuf (checked/copied above).
            let ret = unsafe { sys::hac_rte_pktmbuf_linearize(self.ptr.as_ptr()) };
            if ret != 0 {
                return Err(DpdkError::usage(
                    "rte_pktmbuf_linearize",
                    error::ENOMEM,
                    "the chain does not fit in the first segment",
                ));
            }
        }
        Ok(())
    }

    /// Frees every mbuf of `mbufs` in one call (`rte_pktmbuf_free_bulk`), leaving it
    /// empty.
    pub fn free_bulk(mbufs: &mut Vec<Mbuf>) {
        let n = mbufs.len();
        if n == 0 {
            return;
        }
        // SAFETY: Mbuf is repr(transparent) over NonNull<rte_mbuf>, so the vector's
        // buffer is an array of n valid mbuf pointers whose references we own;
        // set_len(0) first hands those references to DPDK (no double free by Drop).
        unsafe {
            mbufs.set_len(0);
            let count = u32::try_from(n).unwrap_or(u32::MAX);
            sys::hac_rte_pktmbuf_free_bulk(mbufs.as_mut_ptr().cast::<*mut sys::rte_mbuf>(), count);
        }
    }

    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: valid mbuf (type invariant); mtod is buf_addr + data_off.
        unsafe { sys::hac_rte_pktmbuf_mtod(self.ptr.as_ptr()).cast::<u8>() }
    }

    fn writable_or_panic(&mut self) {
        if let Err(e) = self.make_writable() {
            panic!("hac-dpdk: cannot make a shared mbuf writable: {e}");
        }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own one reference to a valid mbuf (type invariant) and give it up
        // here exactly once.
        unsafe { sys::hac_rte_pktmbuf_free(self.ptr.as_ptr()) }
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len())
            .field("headroom", &self.headroom())
            .field("tailroom", &self.tailroom())
            .field("nb_segs", &self.nb_segs())
            .field("refcnt", &self.refcnt())
            .finish()
    }
}

impl PacketBuf for Mbuf {
    fn data(&self) -> &[u8] {
        // SAFETY: the first segment's data_len bytes at mtod lie inside the mbuf's
        // buffer, which stays alive while &self does. No handle writes while this one
        // can read: writers are exclusive (make_writable) and &self excludes &mut self.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.len()) }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        // Panics only when a *shared* buffer must be copied and its pool is empty.
        self.writable_or_panic();
        // SAFETY: as in data(), and the handle is now the only reference to the
        // buffer (make_writable), borrowed mutably for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.len()) }
    }

    fn headroom(&self) -> usize {
        // SAFETY: valid mbuf (type invariant).
        usize::from(unsafe { sys::hac_rte_pktmbuf_headroom(self.ptr.as_ptr()) })
    }

    fn tailroom(&self) -> usize {
        // SAFETY: valid mbuf (type invariant); first segment's tailroom.
        usize::from(unsafe { sys::hac_rte_pktmbuf_tailroom(self.ptr.as_ptr()) })
    }

    fn prepend(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        if n > self.headroom()
            || self.len() + n > usize::from(u16::MAX)
            || self.make_writable().is_err()
        {
            return false;
        }
        // SAFETY: exclusive single-segment mbuf with n bytes of headroom (checked).
        !unsafe { sys::hac_rte_pktmbuf_prepend(self.ptr.as_ptr(), n16) }.is_null()
    }

    fn adj(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        if n > self.len() || self.make_writable().is_err() {
            return false;
        }
        // SAFETY: exclusive single-segment mbuf at least n bytes long (checked).
        !unsafe { sys::hac_rte_pktmbuf_adj(self.ptr.as_ptr(), n16) }.is_null()
    }

    fn set_len(&mut self, len: usize) -> bool {
        let Ok(len16) = u16::try_from(len) else {
            return false;
        };
        if len > self.len() + self.tailroom() || self.make_writable().is_err() {
            return false;
        }
        // SAFETY: exclusive single-segment mbuf (make_writable) whose buffer holds
        // data_off + len bytes (checked), so data_len = pkt_len = len is consistent.
        unsafe {
            sys::hac_rte_pktmbuf_set_data_len(self.ptr.as_ptr(), len16);
            sys::hac_rte_pktmbuf_set_pkt_len(self.ptr.as_ptr(), u32::from(len16));
        }
        true
    }

    fn share(&self) -> Self {
        if self.refcnt() < u16::MAX - 1 {
            // SAFETY: valid mbuf; one more reference, owned by the returned handle.
            // Mbuf is !Sync, so no other thread uses this handle meanwhile (DPDK's
            // plain-store shortcut at refcnt 1 is then exact).
            unsafe { sys::hac_rte_mbuf_refcnt_update(self.ptr.as_ptr(), 1) };
            return Mbuf { ptr: self.ptr };
        }
        // Reference count saturated: a copy instead.
        // SAFETY: valid mbuf, read only.
        let c = unsafe { sys::hac_rte_pktmbuf_copy_same_layout(self.ptr.as_ptr()) };
        Mbuf {
            ptr: NonNull::new(c).expect("hac-dpdk: mbuf pool empty while copying a saturated mbuf"),
        }
    }
}

impl Mempool {
    /// An mbuf holding a copy of `bytes` at the default headroom, or `None` when the pool
    /// is empty or `bytes` does not fit.
    #[must_use]
    pub fn alloc_from(&self, bytes: &[u8]) -> Option<Mbuf> {
        let mut m = self.alloc()?;
        if !m.set_len(bytes.len()) {
            return None;
        }
        m.data_mut().copy_from_slice(bytes);
        Some(m)
    }
}
