//! `verify` against a whole stack on loopback: the three real services as processes, a real
//! Prometheus scraping them with the deploy config, and stand-ins for Tempo's, Loki's and
//! Grafana's HTTP APIs fed with what the services really exported and logged. The walk-through
//! passes; then each link is broken in turn and verify must name it.

#![allow(unreachable_pub)] // helpers are `pub` for sibling test modules, not for export

mod chain;
