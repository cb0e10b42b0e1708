//! Liveness and readiness, for orchestrators and `make run`'s wait loop.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::clients::{Clients, Traced};

/// A readiness probe must answer before the orchestrator's own timeout.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Set when the gateway starts shutting down: from then on it is not ready.
#[derive(Debug, Default)]
pub struct Draining(std::sync::atomic::AtomicBool);

impl Draining {
    /// Marks the gateway as shutting down.
    pub fn start(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn started(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Liveness/readiness report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `ready`, `not_ready` or `draining`.
    pub status: &'static str,
    /// Each dependency's gRPC health status.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<&'static str, String>,
}

/// The process is alive (it answers); says nothing about dependencies.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        checks: BTreeMap::new(),
    })
}

/// Ready when auth and user both report SERVING over gRPC health and no shutdown has begun.
#[utoipa::path(
    get, path = "/readyz",
    responses((status = 200, body = Health), (status = 503, description = "`not_ready`: a dependency (named in `checks`) is not serving; `draining`: shutting down", body = Health))
)]
pub async fn readyz(clients: web::Data<Clients>, draining: web::Data<Draining>) -> HttpResponse {
    if draining.started() {
        return HttpResponse::ServiceUnavailable().json(Health {
            status: "draining",
            checks: BTreeMap::new(),
        });
    }
    let (auth, user) = tokio::join!(
        check(
            clients.auth_health.clone(),
            proto::auth::v1::auth_service_server::SERVICE_NAME
        ),
        check(
            clients.user_health.clone(),
            proto::user::v1::user_service_server::SERVICE_NAME
        ),
    );
    let ready = auth == "serving" && user == "serving";
    let body = Health {
        status: if ready { "ready" } else { "not_ready" },
        checks: BTreeMap::from([("auth", auth), ("user", user)]),
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn check(mut client: HealthClient<Traced>, service: &str) -> String {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    match tokio::time::timeout(CHECK_TIMEOUT, client.check(request)).await {
        Ok(Ok(response)) => match response.into_inner().status() {
            ServingStatus::Serving => "serving".to_owned(),
            other => other.as_str_name().to_lowercase(),
        },
        Ok(Err(status)) => format!("error: {:?}", status.code()),
        Err(_) => "timeout".to_owned(),
    }
}
