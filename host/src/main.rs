fn main() -> std::process::ExitCode {
    patchbay_host::cli::main()
}
