# syntax=docker/dockerfile:1
# One image for the whole system: gateway, auth, user, loadgen and verify in /usr/local/bin; compose and
# Kubernetes pick the binary with `command`. Build: `docker build -t observable-rust:dev .`
#
# Stages: chef (the toolchain + cargo-chef) -> planner (a recipe of the dependency graph) ->
# builder (dependencies cooked in their own layer, cached until Cargo.toml/Cargo.lock change,
# then the workspace) -> runtime (distroless: no shell, no package manager, no compiler).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-trixie AS chef
# cargo-chef turns the workspace's manifests into a recipe, so dependencies build in a layer of
# their own: editing a .rs file does not rebuild the ~400 crates underneath it.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The image's gcc is all the build needs: protoc ships inside a build dependency, and libpq and
# SQLite are compiled from source (the binaries link only glibc and libgcc).
RUN cargo chef cook --release --locked --recipe-path recipe.json \
    --bin gateway --bin auth --bin user --bin loadgen --bin certgen --bin verify
COPY . .
RUN cargo build --release --locked --bin gateway --bin auth --bin user --bin loadgen --bin certgen --bin verify \
    && mkdir -p /out/certs

# cc: glibc, libgcc and CA certificates (for TLS to a managed PostgreSQL or collector), nothing
# else; the `nonroot` variant runs as uid 65532.
FROM gcr.io/distroless/cc-debian13:nonroot AS runtime
COPY --from=builder /src/target/release/gateway /src/target/release/auth \
     /src/target/release/user /src/target/release/loadgen /src/target/release/certgen \
     /src/target/release/verify /usr/local/bin/
# Where the certificates for mutual TLS are mounted; owned by the services' user so that a new
# compose volume mounted here is theirs too (Docker copies the mount point's ownership).
COPY --from=builder --chown=65532:65532 /out/certs /certs
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# A writable home for `docker run ... user` with its default SQLite file (compose and Kubernetes
# use PostgreSQL). The gateway listens on every interface, as a container must; auth and user
# share variable names with different defaults, so compose and the manifests set theirs.
WORKDIR /home/nonroot
ENV HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080 50051 50052 50061 50062 9101 9102
# No ENTRYPOINT shell form: there is no shell. Pick the service with `command: ["gateway"]`.
CMD ["gateway"]
