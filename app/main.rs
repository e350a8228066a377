fn main() -> std::process::ExitCode {
    fragility_explorer::tune_runtime();
    fragility_explorer::cli::main()
}
