//! Handing the memory allocator's cached free pages back to the system once no job runs.
//!
//! The `sf3d` binary's allocator (jemalloc, see its `allocator` module) keeps the pages of freed buffers mapped
//! so that a forward pass re-uses them instead of faulting fresh ones in; [`release_cached_pages`] returns them
//! when the last running job ends, so an idle server does not hold a run's working set. Where jemalloc is not
//! the global allocator (the library's own tests) the call finds little cached and is cheap.

/// Returns every arena's cached free pages to the kernel; `Err` holds jemalloc's error number.
#[cfg(not(target_env = "msvc"))]
pub fn release_cached_pages() -> Result<(), i32> {
    // `arena.<i>.purge` with i = MALLCTL_ARENAS_ALL (4096): every arena.
    let name = c"arena.4096.purge";
    // SAFETY: `name` is a static NUL-terminated string; the purge command reads and writes no value, so every
    // pointer argument is null with zero lengths.
    #[allow(unsafe_code)]
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(name.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), 0)
    };
    if rc == 0 { Ok(()) } else { Err(rc) }
}

/// No jemalloc on this target: nothing is cached beyond what the system allocator keeps.
#[cfg(target_env = "msvc")]
pub fn release_cached_pages() -> Result<(), i32> {
    Ok(())
}

#[cfg(all(test, not(target_env = "msvc")))]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::*;

    #[test]
    fn purging_every_arena_is_accepted() {
        // A freed large block in jemalloc's arenas first, so that the purge has something to act on.
        let layout = Layout::from_size_align(32 << 20, 64).expect("layout");
        // SAFETY: a non-zero layout; the block is freed by the same allocator with the same layout.
        #[allow(unsafe_code)]
        unsafe {
            let p = tikv_jemallocator::Jemalloc.alloc(layout);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 1, layout.size());
            tikv_jemallocator::Jemalloc.dealloc(p, layout);
        }
        assert_eq!(release_cached_pages(), Ok(()));
    }
}
