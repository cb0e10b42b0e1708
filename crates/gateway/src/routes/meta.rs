//! `/`: what this is and where to go; `/api/v1/openapi.json`: the contract.

use actix_web::HttpResponse;
use serde_json::json;
use utoipa::OpenApi as _;

/// Name, version and links, so a person hitting the root URL knows what to try next.
pub async fn index() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "links": {
            "signup": "/api/v1/signup",
            "login": "/api/v1/login",
            "me": "/api/v1/users/me",
            "openapi": "/api/v1/openapi.json",
            "healthz": "/healthz",
            "readyz": "/readyz",
            "metrics": "/metrics",
        }
    }))
}

/// The OpenAPI document.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::ApiDoc::openapi())
}
