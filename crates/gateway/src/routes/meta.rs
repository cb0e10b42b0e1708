//! `/`: what this is and where to go; `/api/v1/openapi.json`: the contract; and the document's
//! entry for `/metrics`, which actix-web-prom serves.

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::OpenApi as _;

/// What `GET /` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Index {
    /// Always `gateway`.
    pub name: &'static str,
    /// The running build's version.
    pub version: &'static str,
    /// Where each part of the API lives.
    pub links: Links,
}

/// The paths a newcomer wants next.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Links {
    /// `POST` to create an account.
    pub signup: &'static str,
    /// `POST` for a token.
    pub login: &'static str,
    /// `GET` the caller's profile.
    pub me: &'static str,
    /// This API's OpenAPI document.
    pub openapi: &'static str,
    /// Liveness.
    pub healthz: &'static str,
    /// Readiness.
    pub readyz: &'static str,
    /// Prometheus metrics.
    pub metrics: &'static str,
}

/// Name, version and links, so a person hitting the root URL knows what to try next.
#[utoipa::path(get, path = "/", responses((status = 200, description = "What this is", body = Index)))]
pub async fn index() -> HttpResponse {
    HttpResponse::Ok().json(Index {
        name: "gateway",
        version: env!("CARGO_PKG_VERSION"),
        links: Links {
            signup: "/api/v1/signup",
            login: "/api/v1/login",
            me: "/api/v1/users/me",
            openapi: "/api/v1/openapi.json",
            healthz: "/healthz",
            readyz: "/readyz",
            metrics: "/metrics",
        },
    })
}

/// The OpenAPI document.
#[utoipa::path(
    get, path = "/api/v1/openapi.json",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object))
)]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::ApiDoc::openapi())
}

/// Prometheus metrics in the text exposition format (served by actix-web-prom's middleware
/// before routing; this function only carries the document's entry).
#[utoipa::path(
    get, path = "/metrics",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"))
)]
#[allow(dead_code)] // never routed: the middleware answers before any handler
pub async fn metrics() {}
