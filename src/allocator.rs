//! The process allocator: jemalloc, keeping freed memory (no decay) on transparent huge pages.
//!
//! 3D training allocates and frees tensors of tens of MiB many times per step. glibc's malloc
//! hands every block over 32 MiB back to the kernel, which then zeroes fresh pages on the next
//! touch: measured on the demo U-Net step, page faults were a quarter of the time (8.5 M minor
//! faults in four iterations, against 3.5 k with this configuration; docs/benchmarks.md).
//! The cost is that the resident size stays at its high-water mark until the process exits.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start-up (`MALLOC_CONF` in the environment
/// still overrides it).
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"thp:always,dirty_decay_ms:-1,muzzy_decay_ms:-1\0";
