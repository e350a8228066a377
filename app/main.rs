fn main() -> std::process::ExitCode {
    fragility_explorer::cli::main()
}
