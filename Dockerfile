# Container image of dtredact: a release build on Debian 12 (bookworm),
# copied into distroless/cc, which has glibc, libgcc and CA certificates
# but no shell or package manager.
#
#   docker build -t dtredact:0.1.0 .

# The toolchain of the build machines. Cargo.toml's rust-version is the
# minimum.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked fails the build when Cargo.lock is out of date instead of
# resolving other versions than the ones CI tested.
RUN cargo build --release --locked

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/dtredact /usr/local/bin/dtredact
# The nonroot user of distroless, and the runAsUser of the manifests in k8s/.
USER 65532:65532
# The proxy listens on 8080 in k8s/forwarder, and the admin server on 9090
# (--admin-addr). Config and flags set both, not the image.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/dtredact"]
