# One entry point per task. `make help` lists them.
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help build run test bench lint fmt clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

build: ## Build the three service binaries
	$(CARGO) build --workspace --bins

run: build ## Run gateway, auth and user locally (SQLite, no Docker); Ctrl-C stops all three
	./scripts/run-local.sh

test: ## Run every test: unit, integration (PostgreSQL + SQLite), end-to-end (real binaries)
	# The end-to-end suite starts the real binaries, so they are built first.
	$(CARGO) build --workspace --bins --locked
	$(CARGO) test --workspace --locked

bench: ## Telemetry on vs off vs collector-down: throughput and latency ratios from one run
	# Release binaries: debug builds would measure the optimiser's absence, not telemetry.
	$(CARGO) build --release --workspace --bins --locked
	$(CARGO) bench -p e2e --bench telemetry_overhead --locked

lint: ## rustfmt and clippy, as CI runs them
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

clean: ## Remove build output and local data
	$(CARGO) clean
	rm -rf data
