// The request path makes many small, short-lived allocations on several
// threads; mimalloc serves them with less CPU than the system allocator.
// Plugins free what they allocate themselves (the ABI's `free_buf`), so the
// host's choice of allocator does not reach them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    patchbay_host::cli::main()
}
