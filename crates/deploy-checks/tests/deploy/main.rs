//! Checks of everything under `deploy/` that can be checked without a Docker engine: the compose
//! file against the Compose specification and against itself, the Dockerfile with hadolint, the
//! Prometheus config with promtool and a real Prometheus scraping the real services, Grafana's
//! provisioning, and the Tempo, Loki and Alloy configs cross-checked with compose.

#![allow(unreachable_pub)] // helpers are `pub` for sibling test modules, not for export

mod compose;
mod configs;
mod dashboards;
mod dockerfile;
mod grafana;
mod k8s;
mod kind_up;
mod preflight;
