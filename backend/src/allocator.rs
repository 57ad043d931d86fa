//! The binary's global allocator: jemalloc, set up so that the network's large activation buffers are re-used
//! in place rather than handed back to the kernel and faulted in again.
//!
//! A forward pass allocates and frees buffers of tens to hundreds of megabytes in a loop. Two jemalloc defaults
//! turn each of those into fresh pages, and every fresh page costs a page fault, a page cleared by the kernel and,
//! with several threads, a TLB shootdown on the other cores:
//!
//! * allocations above `oversize_threshold` (8 MiB) live in a dedicated arena that returns freed memory to the
//!   kernel at once (`MADV_DONTNEED`); `oversize_threshold:0` keeps them in the ordinary arenas, whose freed
//!   pages stay mapped and are re-used by the next allocation of a similar size;
//! * a zeroed allocation (`calloc`, what `vec![0.0; n]` becomes) served from such re-used memory is zeroed by
//!   `MADV_DONTNEED` too, so the pages are faulted in again on first write. [`Allocator::alloc_zeroed`] zeroes
//!   large blocks with `memset` instead, which writes memory that is already mapped.
//!
//! With `dirty_decay_ms:-1` freed pages are never returned on a timer (a timer returned part of a forward
//! pass's buffers between one block and the next); the server returns them when its last running job ends
//! (`sf3d_backend::memory::release_cached_pages`), and `sf3d run`/`bench` when the process exits.
//! `_RJEM_MALLOC_CONF` in the environment still overrides these options at run time.

use std::alloc::{GlobalAlloc, Layout};

use tikv_jemallocator::Jemalloc;

/// jemalloc's run-time options, read before `main` (the symbol jemalloc looks up; see the module note).
#[allow(unsafe_code, non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static std::ffi::c_char> = {
    const CONF: &std::ffi::CStr = c"oversize_threshold:0,dirty_decay_ms:-1";
    // SAFETY: the pointer comes from a `'static` C string literal; jemalloc only reads it.
    Some(unsafe { &*CONF.as_ptr() })
};

/// Zeroed blocks at least this large are zeroed by `memset` after a plain allocation (see the module note);
/// smaller ones come from jemalloc's size classes, which zero in place anyway.
const MEMSET_ZEROED_FROM: usize = 64 * 1024;

/// jemalloc with large zeroed allocations zeroed in place.
pub struct Allocator;

// SAFETY: every method forwards to jemalloc with the caller's layout; `alloc_zeroed` zeroes exactly the
// `layout.size()` bytes it was given before returning them.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (non-zero size).
        unsafe { Jemalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < MEMSET_ZEROED_FROM {
            // SAFETY: as `alloc`.
            return unsafe { Jemalloc.alloc_zeroed(layout) };
        }
        // SAFETY: as `alloc`; a non-null result is valid for `layout.size()` bytes of writes.
        unsafe {
            let ptr = Jemalloc.alloc(layout);
            if !ptr.is_null() {
                std::ptr::write_bytes(ptr, 0, layout.size());
            }
            ptr
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (hence jemalloc) with `layout`.
        unsafe { Jemalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc`, with the caller's guarantees on `new_size`.
        unsafe { Jemalloc.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far (`/proc/thread-self/stat`, field 10).
    fn minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
        // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        rest.split(' ').nth(7).expect("minflt field").parse().expect("minflt value")
    }

    #[test]
    fn large_zeroed_blocks_are_zero_and_reuse_mapped_pages() {
        let layout = Layout::from_size_align(64 << 20, 64).expect("layout");
        let pages = (layout.size() / 4096) as u64;
        // SAFETY: non-zero layouts; each block is freed by the same allocator with its layout, and read only
        // within its size after `alloc_zeroed` initialised it.
        #[allow(unsafe_code)]
        unsafe {
            let first = Allocator.alloc_zeroed(layout);
            assert!(!first.is_null());
            std::ptr::write_bytes(first, 0xAB, layout.size());
            Allocator.dealloc(first, layout);

            let before = minor_faults();
            let second = Allocator.alloc_zeroed(layout);
            assert!(!second.is_null());
            let block = std::slice::from_raw_parts(second, layout.size());
            assert!(block.iter().all(|&b| b == 0), "a re-used block came back with stale bytes");
            let faults = minor_faults() - before;
            Allocator.dealloc(second, layout);
            // jemalloc's own calloc would hand the freed pages back to the kernel and fault every one in again.
            assert!(faults < pages / 8, "{faults} page faults for a re-used block of {pages} pages");
        }
    }
}
