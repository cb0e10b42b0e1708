#!/usr/bin/env bash
# Runs user, auth and gateway as local processes: embedded SQLite, no Docker, no collector needed,
# and the embedded trace viewer (crates/viewer) they export to, unless you point them at a
# collector of your own with OTEL_EXPORTER_OTLP_ENDPOINT. Each service's JSON lines go to the
# terminal and to $DATA_DIR/logs/<service>.log (which `make trace` reads).
# Ctrl-C (or SIGTERM) stops them all; each drains in-flight requests and flushes its spans.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug}
HTTP_PORT=${HTTP_PORT:-8080}
AUTH_GRPC_PORT=${AUTH_GRPC_PORT:-50051}
USER_GRPC_PORT=${USER_GRPC_PORT:-50052}
AUTH_METRICS_PORT=${AUTH_METRICS_PORT:-9101}
USER_METRICS_PORT=${USER_METRICS_PORT:-9102}
AUTH_HEALTH_PORT=${AUTH_HEALTH_PORT:-50061}
USER_HEALTH_PORT=${USER_HEALTH_PORT:-50062}
export DATA_DIR=${DATA_DIR:-data}
# Local means local: a DATABASE_URL or OTEL_SERVICE_NAME exported in your shell for another
# project must not point these services at your database or give all three one name.
unset OTEL_SERVICE_NAME
# A fresh signing key per run unless you bring your own: tokens from an earlier run stop working.
# Only auth signs and checks tokens, so only auth is given the key (not exported: gateway and
# user must not inherit it, even when it came from your shell).
jwt_secret=${JWT_SECRET:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}
unset JWT_SECRET
VIEWER_PORT=${VIEWER_PORT:-16686}
OTLP_GRPC_PORT=${OTLP_GRPC_PORT:-4317}
OTLP_HTTP_PORT=${OTLP_HTTP_PORT:-4318}
mkdir -p "$DATA_DIR/logs"

pids=()
stopping=
stop() {
  [ -n "$stopping" ] && return
  stopping=1
  trap - INT TERM
  echo >&2
  echo "stopping..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
  echo "stopped." >&2
}
trap 'stop; exit 0' INT TERM

# Mutual TLS between the three, as deployed: a private CA and a certificate per service, made
# once in $DATA_DIR/certs (delete the folder to rotate them).
certs=$DATA_DIR/certs
"$BIN/certgen" "$certs"
tls() { echo "TLS_CA_FILE=$certs/$1/ca.pem TLS_CERT_FILE=$certs/$1/cert.pem TLS_KEY_FILE=$certs/$1/key.pem"; }

# Spans: to your collector when OTEL_EXPORTER_OTLP_ENDPOINT is set, else to the embedded viewer,
# started first so that no span of the first request is lost.
if [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]; then
  VIEWER_ADDR=127.0.0.1:$VIEWER_PORT VIEWER_OTLP_GRPC_ADDR=127.0.0.1:$OTLP_GRPC_PORT \
    VIEWER_OTLP_HTTP_ADDR=127.0.0.1:$OTLP_HTTP_PORT "$BIN/viewer" & pids+=($!)
  export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$OTLP_GRPC_PORT
  traces="http://127.0.0.1:$VIEWER_PORT   (the embedded viewer; in a terminal: make trace ID=<x-trace-id>)"
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$OTLP_GRPC_PORT") 2>/dev/null && break
    sleep 0.1
  done
else
  traces="exported to $OTEL_EXPORTER_OTLP_ENDPOINT"
fi

# Each service's lines to the terminal and to its own file (appended across runs).
log() { tee -a "$DATA_DIR/logs/$1.log"; }

user_url=https://127.0.0.1:$USER_GRPC_PORT
auth_url=https://127.0.0.1:$AUTH_GRPC_PORT
env $(tls user) DATABASE_URL=sqlite://$DATA_DIR/users.db GRPC_ADDR=127.0.0.1:$USER_GRPC_PORT \
  METRICS_ADDR=127.0.0.1:$USER_METRICS_PORT HEALTH_ADDR=127.0.0.1:$USER_HEALTH_PORT \
  "$BIN/user" > >(log user) & pids+=($!)
env $(tls auth) JWT_SECRET=$jwt_secret GRPC_ADDR=127.0.0.1:$AUTH_GRPC_PORT \
  METRICS_ADDR=127.0.0.1:$AUTH_METRICS_PORT HEALTH_ADDR=127.0.0.1:$AUTH_HEALTH_PORT \
  USER_URL=$user_url "$BIN/auth" > >(log auth) & pids+=($!)
env $(tls gateway) HTTP_ADDR=127.0.0.1:$HTTP_PORT AUTH_URL=$auth_url USER_URL=$user_url \
  "$BIN/gateway" > >(log gateway) & pids+=($!)

base=http://127.0.0.1:$HTTP_PORT
if command -v curl >/dev/null; then
  for _ in $(seq 1 100); do
    if curl -fsS "$base/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
fi

cat >&2 <<BANNER

  gateway   $base            (OpenAPI: $base/api/v1/openapi.json)
  metrics   $base/metrics  http://127.0.0.1:$AUTH_METRICS_PORT/metrics (auth)  http://127.0.0.1:$USER_METRICS_PORT/metrics (user)
  traces    $traces
  logs      $DATA_DIR/logs/<service>.log (and here)
  database  $DATA_DIR/users.db (SQLite)
  mTLS      $certs (a private CA; gateway -> auth -> user calls are authenticated)

  Try:
    curl -si -X POST $base/api/v1/signup -H 'content-type: application/json' \\
         -d '{"email":"ada@example.com","password":"correct horse battery staple","name":"Ada"}'
    curl -s -X POST $base/api/v1/login -H 'content-type: application/json' \\
         -d '{"email":"ada@example.com","password":"correct horse battery staple"}'
    curl -s $base/api/v1/users/me -H "Authorization: Bearer <access_token>"

    then open the viewer, or: make trace ID=<its x-trace-id>

  Ctrl-C stops them all.

BANNER

# If one service dies, stop the others rather than leave a half-running system. (A poll, not
# `wait -n`: macOS still ships bash 3.2.)
while :; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "a service exited; stopping the others" >&2
      stop
      exit 1
    fi
  done
  sleep 1
done
