# syntax=docker/dockerfile:1
#
# govsync's container image: built with the Rust toolchain, run on Debian
# slim with Oracle Instant Client (basiclite), which the Oracle sink loads
# at run time. Build: `docker build -t govsync .` (docker-compose.yml does).
#
#   docker run --rm govsync govsync --help

# --- build -----------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka and ODPI-C are compiled from source by their crates (gcc, make,
# libssl-dev and zlib1g-dev come with this image).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin govsync \
 && install -m 0755 target/release/govsync /usr/local/bin/govsync

# --- run -------------------------------------------------------------------
FROM debian:bookworm-slim
# Instant Client Basic Light (English messages, smaller); "latest" by
# default. Pin a release with e.g.
#   --build-arg INSTANT_CLIENT_URL=https://download.oracle.com/otn_software/linux/instantclient/2390000/instantclient-basiclite-linux.x64-23.9.0.25.07.zip
ARG INSTANT_CLIENT_URL=https://download.oracle.com/otn_software/linux/instantclient/instantclient-basiclite-linuxx64.zip
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g libaio1 curl unzip \
 && curl -fsSL -o /tmp/instantclient.zip "${INSTANT_CLIENT_URL}" \
 && mkdir -p /opt/oracle \
 && unzip -q /tmp/instantclient.zip -d /opt/oracle \
 && mv /opt/oracle/instantclient_* /opt/oracle/instantclient \
 && echo /opt/oracle/instantclient > /etc/ld.so.conf.d/oracle-instantclient.conf \
 && ldconfig \
 && rm /tmp/instantclient.zip \
 && apt-get purge -y curl unzip && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin govsync
COPY --from=build /usr/local/bin/govsync /usr/local/bin/govsync
COPY config/docker/govsync.toml /etc/govsync/govsync.toml
USER govsync
# /metrics, /healthz, /readyz (metrics.listen)
EXPOSE 9464
STOPSIGNAL SIGTERM
CMD ["govsync", "run", "--config", "/etc/govsync/govsync.toml"]
