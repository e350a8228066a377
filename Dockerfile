# The command line in a container (CPU), as the cluster examples run it (examples/slurm,
# examples/k8s):
#
#     docker build -t fragility-explorer .
#     docker run --rm -v "$PWD/work:/work" fragility-explorer study /work/study.toml --out /work/results
#
# CUDA: build in nvidia/cuda:12.6.3-devel-ubuntu24.04 (rustup's Rust 1.95 installed there)
# with `cargo build --release --locked --features cuda`, copy the binary into
# nvidia/cuda:12.6.3-runtime-ubuntu24.04, run with `docker run --gpus all`, and pass
# `--device cuda` to the analyses (in a study file: `device = "cuda"` under [options]).
FROM rust:1.95-slim-trixie AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fragility-explorer

FROM debian:trixie-slim
COPY --from=build /src/target/release/fragility-explorer /usr/local/bin/fragility-explorer
WORKDIR /work
ENTRYPOINT ["fragility-explorer"]
CMD ["--help"]
