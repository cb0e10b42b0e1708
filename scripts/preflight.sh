#!/usr/bin/env bash
# What `make up` (`preflight.sh compose`) and `make kind-up` (`preflight.sh kind`) need, checked
# before either starts anything: each missing tool, too-old version or taken port stops here with
# one line naming it and the minimum, instead of a failure minutes into a build or a rollout.
#
# Minimums, and why:
#   Docker Engine 26.0   compose mounts one folder of the certificates volume per service
#                        (`volume.subpath`), which the Engine API has since 1.45 (Engine 26.0).
#   Docker Compose 2.26  the first release that passes `subpath` on to the Engine (compose-go
#                        2.0.2; Compose 2.25 validated it and then ignored it, moby/moby#47687).
#   not Podman           podman-compose ignores `subpath` and mounts the whole volume
#                        (containers/podman-compose#1188): every service would see every key.
#   kind 0.30            the first release whose node images include Kubernetes 1.34
#                        (k8s/kind-config.yaml pins kindest/node:v1.34.0).
#   kubectl 1.33         Kubernetes supports kubectl within one minor version of the API
#                        server (1.34 here); its built-in kustomize renders k8s/ (5.x).
#
# A port check is skipped when the stack is already up (`make up` twice is an update, and the
# ports are then its own). PREFLIGHT_PORTS overrides the ports read from the files (tests).
set -euo pipefail
cd "$(dirname "$0")/.."

MIN_DOCKER=26.0
MIN_COMPOSE=2.26.0
MIN_KIND=0.30.0
MIN_KUBECTL=1.33

mode=${1:-}
case "$mode" in
  compose) what="make up" ;;
  kind) what="make kind-up" ;;
  *) echo "usage: $0 compose|kind" >&2; exit 64 ;;
esac

fail() {
  echo "$what: $*" >&2
  exit 1
}

# Whether dotted version $1 is at least $2 (sort -V puts the smaller first).
at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

need() {
  command -v "$1" >/dev/null 2>&1 || fail "needs $1 on PATH ($2)"
}

need docker "Docker Engine $MIN_DOCKER or newer: https://docs.docker.com/engine/install/"
# `docker version` reaches the engine; its absence is the commonest first-run failure.
if ! server=$(docker version --format '{{.Server.Version}}' 2>/dev/null) || [ -z "$server" ]; then
  fail "cannot reach the Docker engine (is it running, and may you use its socket?): docker version failed"
fi
if docker version 2>/dev/null | grep -qi podman; then
  fail "Podman is not supported: its compose ignores volume subpaths, so every service would mount every key; use Docker Engine $MIN_DOCKER or newer"
fi

if [ "$mode" = compose ]; then
  at_least "${server#v}" "$MIN_DOCKER" ||
    fail "needs Docker Engine $MIN_DOCKER or newer (volume subpaths); this one is $server"
  compose=$(docker compose version --short 2>/dev/null) ||
    fail "needs the Docker Compose plugin $MIN_COMPOSE or newer (docker compose version failed)"
  at_least "${compose#v}" "$MIN_COMPOSE" ||
    fail "needs Docker Compose $MIN_COMPOSE or newer (the first to mount volume subpaths); this one is $compose"
  running=$(docker compose -f deploy/compose.yaml ps --quiet 2>/dev/null || true)
  # The host side of every `127.0.0.1:HOST:CONTAINER` in compose.yaml.
  ports=${PREFLIGHT_PORTS-$(grep -oE '127\.0\.0\.1:[0-9]+:[0-9]+' deploy/compose.yaml | cut -d: -f2 | sort -un)}
else
  need kind "kind $MIN_KIND or newer: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  need kubectl "kubectl $MIN_KUBECTL or newer: https://kubernetes.io/docs/tasks/tools/"
  # `kind v0.30.0 go1.24.6 linux/amd64`
  kind_version=$(kind version 2>/dev/null | grep -oE 'v[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || true)
  at_least "${kind_version#v}" "$MIN_KIND" ||
    fail "needs kind $MIN_KIND or newer (node images for Kubernetes 1.34); this one is ${kind_version:-unknown}"
  # `"gitVersion": "v1.32.2",` in the client's JSON.
  kubectl_version=$(kubectl version --client -o json 2>/dev/null | grep -oE '"gitVersion": *"v[0-9]+\.[0-9]+' | grep -oE '[0-9]+\.[0-9]+$' | head -n 1 || true)
  at_least "${kubectl_version:-0}" "$MIN_KUBECTL" ||
    fail "needs kubectl $MIN_KUBECTL or newer; this one is ${kubectl_version:-unknown}"
  running=$(kind get clusters 2>/dev/null | grep -x "${KIND_CLUSTER:-observable-rust}" || true)
  ports=${PREFLIGHT_PORTS-$(grep -oE 'hostPort: *[0-9]+' k8s/kind-config.yaml | grep -oE '[0-9]+$' | sort -un)}
fi

if [ -z "$running" ]; then
  for port in $ports; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      fail "port $port on 127.0.0.1 is taken (is \`make run\` or another stack still going?); stop what holds it (ss -ltnp 'sport = :$port' shows it)"
    fi
  done
fi
