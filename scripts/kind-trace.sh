#!/usr/bin/env bash
# `make kind-trace [ID=...]`: `make trace` against the kind cluster. Tempo and Loki are not
# published on the host (only the gateway and Grafana are), so their Services are port-forwarded
# for the length of the call (kubectl's port-forward reaches the pod through the kubelet, so the
# namespace's NetworkPolicies, which admit only in-cluster readers, do not stand in its way).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-observable-rust}
KUBECTL=(kubectl --context "kind-$CLUSTER" --namespace observable-rust)
TEMPO_PORT=${TEMPO_PORT:-13200}
LOKI_PORT=${LOKI_PORT:-13100}

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"${KUBECTL[@]}" port-forward svc/tempo "$TEMPO_PORT:3200" >/dev/null & pids+=($!)
"${KUBECTL[@]}" port-forward svc/loki "$LOKI_PORT:3100" >/dev/null & pids+=($!)
for port in "$TEMPO_PORT" "$LOKI_PORT"; do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
TRACE_SOURCE=tempo TEMPO_URL=http://127.0.0.1:$TEMPO_PORT LOKI_URL=http://127.0.0.1:$LOKI_PORT \
  "${CARGO:-cargo}" run --quiet --bin trace -- "$@"
