//! HTTP handlers and the OpenAPI document that describes them.

pub mod api;
pub mod health;
pub mod meta;

use utoipa::OpenApi;

/// The OpenAPI 3.1 document served at `/api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Observable Rust services: gateway", description = "Public REST API. Every response carries `traceresponse` and `x-trace-id` headers; every error body is `{code, message, trace_id}`."),
    paths(
        meta::index, api::signup, api::login, api::me, health::healthz, health::readyz,
        meta::metrics, meta::openapi
    ),
    components(schemas(
        api::SignupBody, api::LoginBody, api::UserView, api::TokenView,
        crate::error::ErrorBody, health::Health, meta::Index, meta::Links
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
