// SPDX-License-Identifier: GPL-2.0

//! A file handler for testing LUO itself (`CONFIG_LIVEUPDATE_RUST_TEST`).
//!
//! It is written in Rust against [`kernel::liveupdate::FileHandler`] and registered through
//! the C API like any handler. The debugfs file `liveupdate/test_handler` (root only, as all of
//! debugfs) creates *test objects*: files holding a number, which the handler carries across a
//! kexec as its 64-bit handle. Its `freeze`, `retrieve` and `can_finish` can be told to fail,
//! and it counts its calls, so selftests can check LUO's rollback and sticky-error rules. It
//! can also corrupt the handover once written, on purpose (see [`luo_rs_test_corrupt`]), to
//! test how the next kernel rejects bad data. A test FLB (see [`TestFlb`]) can be linked to it,
//! whose `preserve` calls the FLB API.
//!
//! ioctls of debugfs `liveupdate/test_handler` (type `'L'`, argument passed by value):
//! - 1 `CREATE(value)`: a new test object; returns its fd.
//! - 2 `FAIL_FREEZE(errno | nth << 16)`: the nth `freeze` call from now fails (0 disarms).
//! - 3 `FAIL_RETRIEVE(errno)`: every `retrieve` fails with `errno` (0 disarms).
//! - 4 `CAN_FINISH(bool)`: what `can_finish` answers (initially 1).
//! - 5 `COUNT(which)`: calls so far of preserve(0), unpreserve(1), freeze(2), unfreeze(3),
//!   retrieve(4), finish(5), and of the test FLB's preserve(6) and unpreserve(7).
//! - 6 `CORRUPT(mode)`: corrupt the handover written at the next reboot.
//! - 7 `FREEZE_DELAY(ms)`: every `freeze` sleeps that long first (0: no delay), to widen
//!   the window of races with the reboot path.
//! - 9 `UNREGISTER`: drops the handler's [`Registration`] (files it preserved stay).
//! - 10 `REGISTER`: registers the handler again (`EEXIST` if it is registered).
//! - 11 `UNPRESERVE_DELAY(ms)`: every `unpreserve` sleeps that long first (0: no delay).
//! - 12 `FLB(op)`: the test FLB. 1: links it to the handler (`liveupdate_register_flb`); 0:
//!   unlinks it (`liveupdate_unregister_flb`); 2: `liveupdate_flb_get_incoming` on it (the
//!   reference is put back); 3: what the FLB API call of its last `preserve` returned (0 or
//!   an errno; 0 before the first); 4: how many FLBs, of any handler, LUO keeps a state for.
//!
//! ioctl 16 `VALUE` on a test object returns its number. The number is also the object's id
//! ([`FileHandler::get_id`]): two objects with the same number cannot both be preserved.

use kernel::{
    bindings,
    debugfs,
    error::to_result,
    fs::{
        anon_inode::{
            self,
            AnonInodeOps, //
        },
        file::{
            flags::{
                O_CLOEXEC,
                O_RDWR, //
            },
            FileDescriptorReservation, //
        },
        File, //
    },
    ioctl::_IO,
    kho::PreservedPage,
    liveupdate::{
        FileHandler,
        Handover,
        Registration,
        RetrieveStatus, //
    },
    new_mutex,
    prelude::*,
    rbtree::RBTree,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Relaxed, //
        },
        Mutex,
        SetOnce, //
    },
    types::Opaque, //
};

const T: u32 = b'L' as u32;
const CREATE: u32 = _IO(T, 1);
const FAIL_FREEZE: u32 = _IO(T, 2);
const FAIL_RETRIEVE: u32 = _IO(T, 3);
const CAN_FINISH: u32 = _IO(T, 4);
const COUNT: u32 = _IO(T, 5);
const CORRUPT: u32 = _IO(T, 6);
const FREEZE_DELAY: u32 = _IO(T, 7);
const UNREGISTER: u32 = _IO(T, 9);
const REGISTER: u32 = _IO(T, 10);
const UNPRESERVE_DELAY: u32 = _IO(T, 11);
const FLB: u32 = _IO(T, 12);
const VALUE: u32 = _IO(T, 16);

/// Call counters, indexed as in `COUNT`.
static CALLS: [Atomic<i32>; 8] = [const { Atomic::new(0) }; 8];
/// Countdown to the failing `freeze` call (0: disarmed) and its errno.
static FREEZE_FAIL_IN: Atomic<i32> = Atomic::new(0);
static FREEZE_ERRNO: Atomic<i32> = Atomic::new(0);
static RETRIEVE_ERRNO: Atomic<i32> = Atomic::new(0);
static FINISH_OK: Atomic<bool> = Atomic::new(true);
static FREEZE_DELAY_MS: Atomic<i32> = Atomic::new(0);
static UNPRESERVE_DELAY_MS: Atomic<i32> = Atomic::new(0);
/// The corruption to apply at the next reboot (see [`luo_rs_test_corrupt`]).
pub(crate) static CORRUPT_MODE: Atomic<i32> = Atomic::new(0);

/// Sleeps for the number of milliseconds in `knob`, if positive.
fn sleep_ms(knob: &Atomic<i32>) {
    let ms = knob.load(Relaxed);
    if ms > 0 {
        kernel::time::delay::fsleep(kernel::time::Delta::from_millis(ms.into()));
    }
}

fn count(i: usize) {
    if let Some(c) = CALLS.get(i) {
        c.fetch_add(1, Relaxed);
    }
}

/// Live test objects: `struct file` address -> number; and the handler's registration.
#[pin_data]
struct Objects {
    #[pin]
    map: Mutex<RBTree<usize, u64>>,
    /// `None` after `UNREGISTER`. Lock order: before LUO's locks (dropping a registration
    /// takes the registry lock); never taken by the handler's methods.
    #[pin]
    registration: Mutex<Option<Registration<TestHandler>>>,
}

static OBJECTS: SetOnce<Pin<KBox<Objects>>> = SetOnce::new();
fn all() -> Result<&'static Objects> {
    OBJECTS.as_ref().map(|o| o.as_ref().get_ref()).ok_or(ENODEV)
}

fn objects() -> Result<&'static Mutex<RBTree<usize, u64>>> {
    Ok(&all()?.map)
}

/// Registers the test handler (`EEXIST` if it is).
fn register() -> Result {
    let mut reg = all()?.registration.lock();
    if reg.is_some() {
        return Err(EEXIST);
    }
    *reg = Some(Registration::new(
        kernel::module::this_module::<crate::LocalModule>(),
        TestHandler,
    )?);
    Ok(())
}

/// The test FLB, a `struct liveupdate_flb` that lives for the rest of the kernel's life, set
/// up by [`init`]. `FLB` links it to the test handler.
///
/// Its `preserve` calls the FLB API, as FLB ops may: LUO runs it with the FLB's outgoing lock
/// held, and the FLB API takes `Luo::flb_states`, so it checks, with lockdep, that LUO never
/// takes another of its locks under `flb_states` (the innermost, see the lock order in
/// `luo_rs.rs`).
struct TestFlb(Opaque<bindings::liveupdate_flb>);

// SAFETY: `init` writes the FLB once, before anything can refer to it (the debugfs file,
// which links it, is made after); from then on it is only read. The Rust LUO does not
// use its `private` part.
unsafe impl Sync for TestFlb {}

static TEST_FLB: TestFlb = TestFlb(Opaque::zeroed());

/// The ops of the test FLB.
struct TestFlbOps(bindings::liveupdate_flb_ops);

// SAFETY: Function pointers and a NULL owner (built-in code), never written.
unsafe impl Sync for TestFlbOps {}

static TEST_FLB_OPS: TestFlbOps = TestFlbOps(bindings::liveupdate_flb_ops {
    preserve: Some(test_flb_preserve),
    unpreserve: Some(test_flb_unpreserve),
    retrieve: Some(test_flb_retrieve),
    finish: Some(test_flb_finish),
    owner: core::ptr::null_mut(),
});

/// The test FLB's compatible string.
const FLB_COMPATIBLE: &[u8] = b"luo-rs-test-flb-v1\0";
const _: () = assert!(FLB_COMPATIBLE.len() <= bindings::LIVEUPDATE_FLB_COMPAT_LENGTH as usize);

/// What the FLB API call of the test FLB's last `preserve` returned (0 or -errno).
static FLB_API_RESULT: Atomic<i32> = Atomic::new(0);

/// Gives the zeroed test FLB its ops and compatible string.
fn init_flb() {
    let flb = TEST_FLB.0.get();
    // SAFETY: Nothing refers to the FLB yet (see `TestFlb`). The compatible string fits
    // (checked above); `compatible` is `const` in C only to stop changes after registration.
    unsafe {
        (*flb).ops = &TEST_FLB_OPS.0;
        core::ptr::copy_nonoverlapping(
            FLB_COMPATIBLE.as_ptr(),
            (&raw mut (*flb).compatible).cast::<u8>(),
            FLB_COMPATIBLE.len(),
        );
    }
}

/// `liveupdate_flb_get_incoming()` on the test FLB, the reference put back at once: 0 or
/// -errno.
fn flb_get_incoming() -> c_int {
    let flb = TEST_FLB.0.get();
    let mut obj: *mut c_void = core::ptr::null_mut();
    // SAFETY: The test FLB lives for the rest of the kernel's life; `obj` is valid for writes.
    let r = unsafe { bindings::liveupdate_flb_get_incoming(flb, &mut obj) };
    if r == 0 {
        // SAFETY: Drops the reference taken just above.
        unsafe { bindings::liveupdate_flb_put_incoming(flb) };
    }
    r
}

/// `preserve` of the test FLB: calls the FLB API (for its own incoming object, which there is
/// none of in the tests), with LUO holding the FLB's outgoing lock.
///
/// # Safety
///
/// `argp` is a valid argument block (LUO calls it so).
unsafe extern "C" fn test_flb_preserve(argp: *mut bindings::liveupdate_flb_op_args) -> c_int {
    count(6);
    FLB_API_RESULT.store(flb_get_incoming(), Relaxed);
    // SAFETY: `argp` is valid by the caller's guarantee.
    unsafe { (*argp).data = 0x7e57_f1b0 };
    0
}

/// `unpreserve` of the test FLB.
///
/// # Safety
///
/// `argp` is a valid argument block (LUO calls it so).
unsafe extern "C" fn test_flb_unpreserve(_argp: *mut bindings::liveupdate_flb_op_args) {
    count(7);
}

/// `retrieve` of the test FLB: the object is the FLB itself (any non-NULL pointer would do).
///
/// # Safety
///
/// `argp` is a valid argument block (LUO calls it so).
unsafe extern "C" fn test_flb_retrieve(argp: *mut bindings::liveupdate_flb_op_args) -> c_int {
    // SAFETY: `argp` is valid by the caller's guarantee.
    unsafe { (*argp).obj = (*argp).flb.cast() };
    0
}

/// `finish` of the test FLB.
///
/// # Safety
///
/// `argp` is a valid argument block (LUO calls it so).
unsafe extern "C" fn test_flb_finish(_argp: *mut bindings::liveupdate_flb_op_args) {}

/// The test handler as LUO has it registered (`ENOENT` after `UNREGISTER`).
fn registered_handler() -> Result<*mut bindings::liveupdate_file_handler> {
    crate::luo()?
        .read_registry()
        .find_by_compatible(COMPATIBLE)
        .map(|h| h.ops().as_raw())
        .ok_or(ENOENT)
}

/// `FLB(op)`.
fn flb_ioctl(op: usize) -> Result<isize> {
    match op {
        0 | 1 => {
            let fh = registered_handler()?;
            let flb = TEST_FLB.0.get();
            if op == 1 {
                // SAFETY: `fh` is a registered handler, whose descriptor is never freed; the
                // test FLB lives for the rest of the kernel's life.
                to_result(unsafe { bindings::liveupdate_register_flb(fh, flb) })?;
            } else {
                // SAFETY: As above.
                unsafe { bindings::liveupdate_unregister_flb(fh, flb) };
            }
            Ok(0)
        }
        2 => to_result(flb_get_incoming()).map(|()| 0),
        3 => to_result(FLB_API_RESULT.load(Relaxed)).map(|()| 0),
        4 => isize::try_from(crate::luo()?.flb_states().len()).map_err(|_| EOVERFLOW),
        _ => Err(EINVAL),
    }
}

/// A test object: a file holding a number.
struct TestObject;

#[vtable]
impl AnonInodeOps for TestObject {
    type Ptr = KBox<u64>;

    fn release(_value: KBox<u64>, file: &File) {
        if let Ok(o) = objects() {
            o.lock().remove(&(file.as_ptr() as usize));
        }
    }

    fn ioctl(value: &u64, _file: &File, cmd: u32, _arg: usize) -> Result<isize> {
        match cmd {
            VALUE => isize::try_from(*value).map_err(|_| EOVERFLOW),
            _ => Err(ENOTTY),
        }
    }
}

fn new_object(value: u64) -> Result<ARef<File>> {
    let o = objects()?;
    let node = kernel::rbtree::RBTreeNodeReservation::new(GFP_KERNEL)?;
    let file = anon_inode::create_file::<TestObject>(
        c"[luo_rs_test]",
        KBox::new(value, GFP_KERNEL)?,
        O_RDWR,
    )?;
    o.lock()
        .insert(node.into_node(file.as_ptr() as usize, value));
    Ok(file)
}

/// The test handler.
struct TestHandler;

/// The test handler's compatible string.
const COMPATIBLE: &CStr = c"luo-rs-test-v1";

impl FileHandler for TestHandler {
    type State = u64;

    fn compatible(&self) -> &CStr {
        COMPATIBLE
    }

    fn can_preserve(&self, file: &File) -> bool {
        objects().is_ok_and(|o| o.lock().get(&(file.as_ptr() as usize)).is_some())
    }

    fn preserve(&self, file: &File) -> Result<(u64, u64)> {
        count(0);
        let v = *objects()?
            .lock()
            .get(&(file.as_ptr() as usize))
            .ok_or(EINVAL)?;
        Ok((v, v))
    }

    fn unpreserve(&self, _file: &File, _data: u64, _state: u64) {
        count(1);
        sleep_ms(&UNPRESERVE_DELAY_MS);
    }

    fn freeze(&self, _file: &File, data: &mut u64, state: &mut u64) -> Result {
        count(2);
        sleep_ms(&FREEZE_DELAY_MS);
        let n = FREEZE_FAIL_IN.load(Relaxed);
        if n > 0 {
            FREEZE_FAIL_IN.store(n - 1, Relaxed);
            if n == 1 {
                return Err(Error::from_errno(-FREEZE_ERRNO.load(Relaxed)));
            }
        }
        *data = *state;
        Ok(())
    }

    fn unfreeze(&self, _file: &File, _data: u64, _state: &mut u64) {
        count(3);
    }

    fn retrieve(&self, data: Handover) -> Result<ARef<File>> {
        count(4);
        let e = RETRIEVE_ERRNO.load(Relaxed);
        if e > 0 {
            return Err(Error::from_errno(-e));
        }
        new_object(data.raw())
    }

    fn can_finish(&self, _file: Option<&File>, _data: Handover, _status: RetrieveStatus) -> bool {
        FINISH_OK.load(Relaxed)
    }

    fn finish(&self, _file: Option<&File>, _data: Handover, _status: RetrieveStatus) {
        count(5);
    }

    fn get_id(file: &File) -> usize {
        // The object's number; a file that is not a live test object keeps its own id.
        objects()
            .ok()
            .and_then(|o| o.lock().get(&(file.as_ptr() as usize)).copied())
            .map_or(file.as_ptr() as usize, |v| v as usize)
    }
}

/// debugfs `liveupdate/test_handler`.
struct Control;

impl debugfs::Ioctl for Control {
    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        let arg32 = i32::try_from(arg).map_err(|_| EINVAL)?;
        match cmd {
            CREATE => {
                let fd = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
                let file = new_object(arg as u64)?;
                let n = fd.reserved_fd();
                fd.fd_install(file);
                Ok(n as isize)
            }
            FAIL_FREEZE => {
                FREEZE_ERRNO.store(arg32 & 0xffff, Relaxed);
                FREEZE_FAIL_IN.store(arg32 >> 16, Relaxed);
                Ok(0)
            }
            FAIL_RETRIEVE => {
                RETRIEVE_ERRNO.store(arg32, Relaxed);
                Ok(0)
            }
            CAN_FINISH => {
                FINISH_OK.store(arg != 0, Relaxed);
                Ok(0)
            }
            COUNT => CALLS
                .get(arg)
                .map(|c| c.load(Relaxed) as isize)
                .ok_or(EINVAL),
            CORRUPT => {
                CORRUPT_MODE.store(arg32, Relaxed);
                Ok(0)
            }
            FREEZE_DELAY => {
                FREEZE_DELAY_MS.store(arg32, Relaxed);
                Ok(0)
            }
            UNPRESERVE_DELAY => {
                UNPRESERVE_DELAY_MS.store(arg32, Relaxed);
                Ok(0)
            }
            UNREGISTER => {
                let reg = all()?.registration.lock().take();
                drop(reg.ok_or(ENOENT)?);
                Ok(0)
            }
            REGISTER => register().map(|()| 0),
            FLB => flb_ioctl(arg),
            _ => Err(ENOTTY),
        }
    }
}

/// debugfs `liveupdate/test_handler`, kept for the kernel's life.
static CONTROL: SetOnce<Pin<KBox<debugfs::File<Control>>>> = SetOnce::new();

/// Registers the test handler and makes debugfs `liveupdate/test_handler` (late boot, after
/// LUO itself).
pub(crate) fn init() -> Result {
    let objects = KBox::pin_init(
        pin_init!(Objects {
            map <- new_mutex!(RBTree::new(), "luo_rs_test::objects"),
            registration <- new_mutex!(None, "luo_rs_test::registration"),
        }),
        GFP_KERNEL,
    )?;
    OBJECTS.populate(objects);
    init_flb();
    register()?;
    let dir = kernel::liveupdate::debugfs_dir();
    CONTROL.populate(KBox::pin_init(
        dir.ioctl_file(c"test_handler", Control),
        GFP_KERNEL,
    )?);
    Ok(())
}

/// Corrupts the handover the reboot path wrote, as asked with `CORRUPT`, as a bug or an
/// attacker in this kernel would: called at device shutdown (a reboot notifier of the C glue),
/// after the reboot path, which itself has no test code.
///
/// 1: wrong compatible string; 2: the first session's file count off by one; 3: the session
/// chain loops back to its first block; 4: the first session's files at an address that is
/// not preserved; 5: the first session's name without its NUL; 6: FLB table count too large;
/// 7: live update number `u64::MAX`; 8: the first FLB's user count `u64::MAX`; 9: the first
/// session's file count `u64::MAX`; 10: the session list at a page-aligned address far beyond
/// memory; 11: the first session block's entry count `u64::MAX`; 12: the FLB table at an
/// unaligned address; 13: the file count of every session whose name starts with
/// `corrupt-drop` off by one, so that the next kernel drops those sessions whatever their
/// place in the list.
#[no_mangle]
pub(crate) extern "C" fn luo_rs_test_corrupt() {
    let mode = CORRUPT_MODE.load(Relaxed);
    if mode == 0 {
        return;
    }
    if let Ok(l) = crate::luo() {
        l.with_written(|root, sessions, flbs| corrupt(mode, root, sessions, flbs));
    }
}

fn corrupt(mode: i32, ser: &mut [u8], sessions: &mut [PreservedPage], flbs: &mut [u8]) {
    use crate::abi::{
        flb_ser,
        get_u64,
        luo_ser,
        put_u64,
        session_ser, //
    };
    use crate::{
        block::HEADER_SIZE,
        name::NAME_LEN, //
    };
    pr_warn!("test: corrupting the outgoing handover (mode {})\n", mode);
    let head = get_u64(ser, luo_ser::SESSIONS_PA);
    let first = sessions.first_mut().map(|p| &mut p.bytes_mut()[..]);
    let entry = HEADER_SIZE;
    match (mode, first) {
        (1, _) => put_u64(ser, 0, u64::from_ne_bytes(*b"luo-v0\0\0")),
        (2, Some(b)) => {
            let c = get_u64(b, entry + session_ser::COUNT);
            put_u64(b, entry + session_ser::COUNT, c.wrapping_add(1));
        }
        (3, Some(b)) => put_u64(b, 0, head),
        (4, Some(b)) => put_u64(b, entry + session_ser::FILES, 0x1000),
        (5, Some(b)) => {
            if let Some(name) = b.get_mut(entry..entry + NAME_LEN) {
                name.fill(b'X');
            }
        }
        (6, _) => put_u64(flbs, 8, 1000),
        (7, _) => put_u64(ser, luo_ser::LIVEUPDATE_NUM, u64::MAX),
        (8, _) => put_u64(flbs, flb_ser::HEADER + flb_ser::COUNT, u64::MAX),
        (9, Some(b)) => put_u64(b, entry + session_ser::COUNT, u64::MAX),
        (10, _) => put_u64(ser, luo_ser::SESSIONS_PA, 0x7fff_ffff_f000),
        (11, Some(b)) => put_u64(b, 8, u64::MAX),
        (12, _) => put_u64(ser, luo_ser::FLBS_PA, 0x1234),
        (13, _) => {
            for page in sessions.iter_mut() {
                let b = page.bytes_mut();
                let n = get_u64(b, 8) as usize;
                for e in b[HEADER_SIZE..].chunks_exact_mut(session_ser::SIZE).take(n) {
                    if e.starts_with(b"corrupt-drop") {
                        let c = get_u64(e, session_ser::COUNT);
                        put_u64(e, session_ser::COUNT, c.wrapping_add(1));
                    }
                }
            }
        }
        _ => {}
    }
}
