//! Large buffers go back to the operating system as soon as they are freed.
//!
//! glibc serves a request above its mmap threshold with a mapping of its
//! own, which `free` unmaps; but each such block freed raises the threshold
//! to its size (up to 32 MiB), after which blocks of that size come from the
//! allocating thread's arena and stay resident once freed. The service
//! allocates its largest buffers (S3 parts, decoded images) on blocking
//! threads, each with its own arena, so under load the freed ones piled up
//! there: a 300 MiB upload in S3 mode with four 16 MiB parts in flight peaked
//! at 140 MiB instead of 106. A fixed threshold keeps every block of
//! `THRESHOLD` or more a mapping of its own. Other allocators return large
//! blocks on their own; this is glibc's setting only.
//!
//! A fixed threshold also fixes the trim threshold, the free space at the
//! top of a heap above which `free` gives memory back, at its default of
//! 128 KiB, which the dynamic rule would have raised to twice the mmap
//! threshold. Below a 256 KiB receive batch, every batch freed gave its
//! pages back and the next one faulted them in again: 200,000 page faults
//! and 0.5 CPU-seconds more per GiB uploaded. The trim threshold is set to
//! the mmap threshold: no more faults than before, and 32 thumbnails at
//! once still peak 15 MiB above the RSS before (twice as much, as the
//! dynamic rule would keep, made that 23 MiB).

/// Blocks of at least this size are mapped and unmapped one by one. The
/// receive path's buffers (a few hundred KiB) stay below it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THRESHOLD: libc::c_int = 1024 * 1024;

/// Sets the allocator up; called before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn return_large_blocks() {
    // SAFETY: mallopt only changes the allocator's tuning; it is called
    // before the runtime starts any thread. A refusal (0) leaves glibc's
    // default, which is correct, only hungrier.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_large_blocks() {}
