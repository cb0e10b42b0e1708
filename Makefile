# One entry point per task. `make help` lists them.
.DEFAULT_GOAL := help
CARGO ?= cargo

# The compose stack (deploy/compose.yaml). The `load` profile is named on down/ps/logs so that
# a running load generator is included.
COMPOSE ?= docker compose -f deploy/compose.yaml
LOAD_SECONDS ?= 60

KIND_CLUSTER ?= observable-rust
KUBECTL ?= kubectl --context kind-$(KIND_CLUSTER) --namespace observable-rust

.PHONY: help build run trace test bench lint fmt clean up verify down clean-stack logs ps load kind-up kind-down kind-load kind-verify kind-trace

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

build: ## Build the service binaries, the trace viewer, trace, verify and the load generator
	$(CARGO) build --workspace --bins

run: build ## Run gateway, auth, user and the trace viewer locally (SQLite, no Docker); Ctrl-C stops them all
	./scripts/run-local.sh

trace: ## A trace as a tree with its log lines: ID=<trace id> (none: the slowest and the latest failed); TRACE_SOURCE=tempo after make up
	@$(CARGO) run --quiet --bin trace -- $(ID)

test: ## Run every test: unit, integration (PostgreSQL + SQLite), end-to-end (real binaries)
	# The end-to-end suite starts the real binaries, so they are built first.
	$(CARGO) build --workspace --bins --locked
	$(CARGO) test --workspace --locked

bench: ## Telemetry off / ids only / exporting (sink, collector, dead, hanging): ratios from one run, into BENCHMARKS.md
	# Release binaries: debug builds would measure the optimiser's absence, not telemetry.
	$(CARGO) build --release --workspace --bins --locked
	BENCH_OUTPUT=$${BENCH_OUTPUT-BENCHMARKS.md} $(CARGO) bench -p e2e --bench telemetry_overhead --locked

lint: ## rustfmt and clippy, as CI runs them
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

clean: ## Remove build output and local data
	$(CARGO) clean
	rm -rf data

up: deploy/.env ## Docker Compose: services, PostgreSQL, Tempo, Loki, Alloy, Prometheus, Grafana; returns when healthy
	@# Docker Engine 26+, Compose 2.26+, not Podman, and free ports: one line naming what is missing.
	./scripts/preflight.sh compose
	$(COMPOSE) up --detach --build --wait --wait-timeout 600
	@echo
	@echo "  gateway     http://localhost:8080        curl -si localhost:8080/ | grep x-trace-id"
	@echo "  grafana     http://localhost:3000        (anonymous editor: Explore works; admin password in deploy/.env)"
	@echo "  prometheus  http://localhost:9090   tempo http://localhost:3200   loki http://localhost:3100"
	@echo
	@echo "  make verify the walk-through, automated    make load   traffic for the dashboards"
	@echo "  make logs / ps / down / clean-stack"

verify: ## After `make up`: one request followed through Tempo, Loki, Prometheus and Grafana; names the first broken link
	$(COMPOSE) run --rm --build verify

down: ## Stop the compose stack, keeping its data volumes
	$(COMPOSE) --profile load down

clean-stack: ## Stop the compose stack and delete its volumes (database, traces, logs, metrics)
	$(COMPOSE) --profile load down --volumes

logs: ## Follow the compose stack's logs (SERVICE=gateway for one)
	$(COMPOSE) --profile load logs --follow --tail 100 $(SERVICE)

ps: ## The compose stack's containers and their health
	$(COMPOSE) --profile load ps --all

load: deploy/.env ## Run the load generator in the stack for LOAD_SECONDS (60) and print its summary
	$(COMPOSE) run --rm --build -e LOAD_DURATION_SECONDS=$(LOAD_SECONDS) loadgen

# Only when missing: the secrets in an existing file are the ones the database volume was
# initialised with.
deploy/.env:
	./scripts/env-from-example.sh deploy/.env.example deploy/.env

kind-up: ## Kubernetes: a kind cluster with the services and the observability stack; idempotent
	KIND_CLUSTER=$(KIND_CLUSTER) ./scripts/kind-up.sh

kind-down: ## Delete the kind cluster (and everything in it)
	kind delete cluster --name $(KIND_CLUSTER)

kind-load: ## Run the load generator as a Job in the kind cluster and print its summary
	$(KUBECTL) delete job loadgen --ignore-not-found
	$(KUBECTL) apply -f k8s/overlays/kind/loadgen-job.yaml
	# The Job runs for 60 s; its summary is printed whether it passed or not.
	$(KUBECTL) wait --for=condition=complete --timeout=180s job/loadgen; status=$$?; \
	  $(KUBECTL) logs job/loadgen; exit $$status

kind-verify: ## After `make kind-up`: the walk-through, automated, as a Job in the cluster; names the first broken link
	$(KUBECTL) delete job verify --ignore-not-found
	$(KUBECTL) apply -f k8s/overlays/kind/verify-job.yaml
	@# Until it succeeds or fails: a failed Job never becomes complete, so `kubectl wait` for
	@# completion alone would sit out its whole timeout. Its report is printed either way.
	@for _ in $$(seq 1 600); do \
	  case "$$($(KUBECTL) get job verify -o jsonpath='{.status.succeeded}/{.status.failed}')" in \
	    1/*|*/1) break ;; \
	  esac; sleep 1; \
	done
	$(KUBECTL) logs job/verify
	@test "$$($(KUBECTL) get job verify -o jsonpath='{.status.succeeded}')" = 1

kind-trace: ## After `make kind-up`: `make trace` against the cluster's Tempo and Loki (ID=<trace id>)
	@CARGO="$(CARGO)" KIND_CLUSTER=$(KIND_CLUSTER) ./scripts/kind-trace.sh $(ID)
