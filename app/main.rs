fn main() -> std::process::ExitCode {
    fragility_explorer::tune_allocator();
    fragility_explorer::cli::main()
}
