#!/usr/bin/env bash
# `make kind-up`: the system and its observability stack on a local kind cluster. Creates the
# cluster when it does not exist, builds the image with the repository's Dockerfile and loads it
# onto the node, writes the secrets once, applies k8s/overlays/kind and waits for every rollout.
# Idempotent: a second run updates in place (and restarts the services if the image changed).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-observable-rust}
IMAGE=observable-rust:dev # the tag k8s/base's `images:` entry names
NAMESPACE=observable-rust
CONTEXT=kind-$CLUSTER
# Every kubectl call names the context and the namespace, so nothing lands in whatever the
# user's kubeconfig has as current (the overlay sets the namespace too).
KUBECTL=(kubectl --context "$CONTEXT" --namespace "$NAMESPACE")
SECRETS=k8s/overlays/kind/secrets

# Tools, their versions and the host ports, each failure one line naming the minimum.
./scripts/preflight.sh kind

if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config k8s/kind-config.yaml --wait 120s
fi

before=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
docker build --tag "$IMAGE" .
after=$(docker image inspect --format '{{.Id}}' "$IMAGE")
kind load docker-image "$IMAGE" --name "$CLUSTER"

for secret in postgres jwt grafana; do
  ./scripts/env-from-example.sh "$SECRETS/$secret.env.example" "$SECRETS/$secret.env"
done
# The certificates for mutual TLS, made once by the image's own certgen (as you, so the files
# are yours); delete the folder and run again to rotate them.
mkdir -p "$SECRETS/certs"
docker run --rm --user "$(id -u):$(id -g)" --volume "$PWD/$SECRETS/certs:/certs" "$IMAGE" certgen /certs

"${KUBECTL[@]}" apply --kustomize k8s/overlays/kind
# The tag stays `dev`, so a rebuilt image changes no manifest: restart the services onto it.
if [ -n "$before" ] && [ "$before" != "$after" ]; then
  "${KUBECTL[@]}" rollout restart deployment/gateway deployment/auth deployment/user
fi
for workload in statefulset/postgres deployment/tempo deployment/loki deployment/prometheus \
  daemonset/alloy deployment/grafana deployment/user deployment/auth deployment/gateway; do
  "${KUBECTL[@]}" rollout status "$workload" --timeout 300s
done

cat <<BANNER

  gateway   http://localhost:8080     curl -si localhost:8080/ | grep x-trace-id
  grafana   http://localhost:3000     (anonymous editor: Explore works; admin password: $SECRETS/grafana.env)

  Try:
    curl -si -X POST localhost:8080/api/v1/signup -H 'content-type: application/json' \\
         -d '{"email":"ada@example.com","password":"correct horse battery staple","name":"Ada"}'
    then paste its x-trace-id into Grafana > Explore > Tempo.

  make kind-load   traffic for the dashboards      make kind-down   delete the cluster

BANNER
