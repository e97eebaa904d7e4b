use std::ffi::{CString, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use crate::error::{self, DpdkError};
use crate::sys;

const UNINIT: u8 = 0;
const INITIALISING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

/// The EAL's state in this process. `rte_eal_init` may be called once per process,
/// successful or not; this guard turns a second call into an error.
static STATE: AtomicU8 = AtomicU8::new(UNINIT);

/// Proof that the EAL is initialised in this process (a zero-sized token).
#[derive(Debug, Clone, Copy)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialises the EAL with `args` (EAL arguments only, without a program name:
    /// `["--no-huge", "--no-shconf", "-m", "256", "--no-pci", "-l", "0-1",
    /// "--vdev=net_ring0"]`). The calling thread becomes the main lcore (and is pinned to
    /// its CPU). Succeeds once per process: any later call fails with `EALREADY`, as does
    /// a retry after a failed attempt (DPDK cannot initialise twice).
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        const OP: &str = "rte_eal_init";
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(c"hac".to_owned());
        for a in args {
            owned.push(CString::new(a.as_str()).map_err(|_| {
                DpdkError::usage(OP, error::EINVAL, format!("argument {a:?} contains NUL"))
            })?);
        }
        let argc = c_int::try_from(owned.len())
            .map_err(|_| DpdkError::usage(OP, error::EINVAL, "too many arguments"))?;
        if STATE
            .compare_exchange(UNINIT, INITIALISING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(DpdkError::usage(
                OP,
                error::EALREADY,
                "the EAL initialises once per process and was already initialised (or tried)",
            ));
        }
        // DPDK keeps pointers into argv (and permutes it): leak the strings and the
        // array for the life of the process (once, a few hundred bytes).
        let mut argv: Vec<*mut c_char> = owned.into_iter().map(CString::into_raw).collect();
        argv.push(std::ptr::null_mut());
        let argv = argv.leak();
        // SAFETY: argv holds argc valid, NUL-terminated, leaked (so never freed) strings
        // followed by NULL, as C's main() would pass; the STATE guard makes this the only
        // call in the process.
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            STATE.store(FAILED, Ordering::Release);
            return Err(DpdkError::from_rte_errno(OP));
        }
        STATE.store(READY, Ordering::Release);
        Ok(Eal { _private: () })
    }

    /// The token, when the EAL is initialised.
    #[must_use]
    pub fn get() -> Option<Eal> {
        (STATE.load(Ordering::Acquire) == READY).then_some(Eal { _private: () })
    }

    /// The token or an `ENODEV`-style error naming `op`.
    pub(crate) fn ensure(op: &str) -> Result<Eal, DpdkError> {
        Self::get().ok_or_else(|| {
            DpdkError::usage(op, error::ENODEV, "the EAL is not initialised (Eal::init)")
        })
    }

    /// Number of lcores the EAL was given (main included).
    #[must_use]
    pub fn lcore_count(self) -> u32 {
        // SAFETY: reads the EAL configuration, initialised (the token proves it).
        unsafe { sys::rte_lcore_count() }
    }

    /// The worker lcores (every enabled lcore but the main one), ascending.
    #[must_use]
    pub fn worker_lcores(self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = u32::MAX; // rte_get_next_lcore(-1, ...) starts at 0
        loop {
            // SAFETY: rte_get_next_lcore only reads the EAL configuration (initialised)
            // and accepts any index; it returns RTE_MAX_LCORE at the end.
            i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
            if i >= sys::RTE_MAX_LCORE {
                return out;
            }
            out.push(i);
        }
    }

    /// The NUMA socket of an lcore.
    #[must_use]
    pub fn lcore_socket(self, lcore: u32) -> Option<u32> {
        if !self.lcore_enabled(lcore) {
            return None;
        }
        // SAFETY: lcore is a valid, enabled lcore id (checked above).
        Some(unsafe { sys::rte_lcore_to_socket_id(lcore) })
    }

    /// Whether `lcore` is one the EAL was given.
    #[must_use]
    pub fn lcore_enabled(self, lcore: u32) -> bool {
        // SAFETY: rte_lcore_is_enabled bounds-checks its argument.
        unsafe { sys::rte_lcore_is_enabled(lcore) != 0 }
    }

    /// Number of usable Ethernet ports (PCI devices bound to DPDK and vdevs).
    #[must_use]
    pub fn port_count(self) -> u16 {
        // SAFETY: reads ethdev's port table; no preconditions.
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    /// The ids of the valid Ethernet ports, ascending.
    #[must_use]
    pub fn port_ids(self) -> Vec<u16> {
        let mut out = Vec::new();
        let mut p = 0u16;
        loop {
            // SAFETY: rte_eth_find_next accepts any id; it returns RTE_MAX_ETHPORTS when
            // there is no valid port at or after it.
            p = unsafe { sys::rte_eth_find_next(p) };
            if u32::from(p) >= sys::RTE_MAX_ETHPORTS {
                return out;
            }
            out.push(p);
            p += 1;
        }
    }

    /// The port id of a device by name: a vdev's name as given to `--vdev`
    /// (`net_ring0`, `net_af_packet0`) or a PCI address (`0000:01:00.0`).
    pub fn port_by_name(self, name: &str) -> Result<u16, DpdkError> {
        const OP: &str = "rte_eth_dev_get_port_by_name";
        let c = CString::new(name)
            .map_err(|_| DpdkError::usage(OP, error::EINVAL, "name contains NUL"))?;
        let mut id = 0u16;
        // SAFETY: c is a valid C string and id a valid out pointer for the call.
        let ret = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &raw mut id) };
        DpdkError::check(OP, ret)
            .map_err(|e| DpdkError::usage(OP, e.errno(), format!("{name}: {}", e.message())))?;
        Ok(id)
    }

    /// Runs `f` on worker lcore `lcore` (`rte_eal_remote_launch`). Call from the main
    /// lcore; the lcore must be idle (`EBUSY` otherwise: a finished job must first be
    /// waited for with [`LcoreHandle::wait`] or [`Eal::wait_all_lcores`]). A panic in `f`
    /// is caught on the lcore and returned by `wait`.
    pub fn launch<F, R>(self, lcore: u32, f: F) -> Result<LcoreHandle<R>, DpdkError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        const OP: &str = "rte_eal_remote_launch";
        self.ensure_main(OP)?;
        if !self.lcore_enabled(lcore) || lcore == main_lcore() {
            return Err(DpdkError::usage(
                OP,
                error::EINVAL,
                format!("lcore {lcore} is not a worker lcore of this EAL"),
            ));
        }
        let slot: Slot<R> = Arc::new(Mutex::new(None));
        let job: *mut Job<F, R> = Box::into_raw(Box::new(Job {
            f,
            slot: Arc::clone(&slot),
        }));
        // SAFETY: trampoline::<F, R> takes `job` back as Box<Job<F, R>> exactly once;
        // lcore is an enabled worker lcore (checked), and we are on the main lcore
        // (checked), as rte_eal_remote_launch requires.
        let ret =
            unsafe { sys::rte_eal_remote_launch(Some(trampoline::<F, R>), job.cast(), lcore) };
        if ret == -error::EBUSY {
            // SAFETY: EBUSY is returned before the job is published to the lcore, so
            // ownership of the box is still ours.
            drop(unsafe { Box::from_raw(job) });
            return Err(DpdkError::new(OP, error::EBUSY));
        }
        if ret < 0 {
            // Any other failure happens after the job was published: the worker may
            // still run it, so the box is leaked rather than freed.
            return Err(DpdkError::new(OP, -ret));
        }
        Ok(LcoreHandle {
            lcore,
            slot,
            _main_only: PhantomData,
        })
    }

    /// Waits until every worker lcore is idle (`rte_eal_mp_wait_lcore`). Main lcore only.
    pub fn wait_all_lcores(self) -> Result<(), DpdkError> {
        self.ensure_main("rte_eal_mp_wait_lcore")?;
        // SAFETY: called on the main lcore (checked) of an initialised EAL.
        unsafe { sys::rte_eal_mp_wait_lcore() };
        Ok(())
    }

    fn ensure_main(self, op: &str) -> Result<(), DpdkError> {
        if lcore_id() == Some(main_lcore()) {
            Ok(())
        } else {
            Err(DpdkError::usage(
                op,
                error::EINVAL,
                "must be called on the main lcore",
            ))
        }
    }
}

type Slot<R> = Arc<Mutex<Option<thread::Result<R>>>>;

struct Job<F, R> {
    f: F,
    slot: Slot<R>,
}

unsafe extern "C" fn trampoline<F, R>(arg: *mut c_void) -> c_int
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    // SAFETY: `arg` is the Box<Job<F, R>> leaked by Eal::launch for this very
    // instantiation, handed to us once by rte_eal_remote_launch.
    let job = unsafe { Box::from_raw(arg.cast::<Job<F, R>>()) };
    let Job { f, slot } = *job;
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    let code = if result.is_ok() { 0 } else { -1 };
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
    code
}

/// A job running on a worker lcore. `!Send`: it is waited for on the main lcore, where
/// it was launched. Dropping it without waiting leaves the lcore finished-but-busy
/// until [`Eal::wait_all_lcores`].
#[derive(Debug)]
pub struct LcoreHandle<R> {
    lcore: u32,
    slot: Slot<R>,
    _main_only: PhantomData<*const ()>,
}

impl<R> LcoreHandle<R> {
    /// The lcore it runs on.
    #[must_use]
    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Whether the job has returned (or panicked).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Waits for the job (`rte_eal_wait_lcore`) and returns its result, or the panic
    /// payload if it panicked; the lcore is idle again afterwards.
    pub fn wait(self) -> thread::Result<R> {
        // SAFETY: the handle is !Send, so this runs on the main lcore that launched the
        // job; lcore is a valid worker id.
        unsafe { sys::rte_eal_wait_lcore(self.lcore) };
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| Err(Box::new("lcore job produced no result")))
    }
}

/// The calling thread's lcore id; `None` on a thread the EAL did not create (or before
/// `Eal::init` on the main thread).
#[must_use]
pub fn lcore_id() -> Option<u32> {
    // SAFETY: reads the calling thread's per-lcore TLS variable; valid on any thread.
    let id = unsafe { sys::hac_rte_lcore_id() };
    // SAFETY: reads an immutable constant the C shim defines.
    let any = unsafe { sys::HAC_RTE_LCORE_ID_ANY };
    (id != any).then_some(id)
}

/// The main lcore's id (meaningful once the EAL is initialised).
#[must_use]
pub fn main_lcore() -> u32 {
    // SAFETY: reads the EAL's static configuration; no preconditions.
    unsafe { sys::rte_get_main_lcore() }
}

/// The NUMA socket of the calling thread (`SOCKET_ID_ANY` when not pinned to one).
#[must_use]
pub fn socket_id() -> i32 {
    // SAFETY: reads the calling thread's per-lcore TLS variable.
    let s = unsafe { sys::rte_socket_id() };
    s.cast_signed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_lcore_outside_eal() {
        assert_eq!(thread::spawn(lcore_id).join().unwrap(), None);
    }
}
