//! The request itself: a sign-up, a login and a profile read, each with a `traceparent` that
//! puts it in the trace verify chose, as a browser with tracing (or an upstream proxy) would.

use serde_json::json;

use crate::{Broken, Clients, Config, Ids};

/// Where to look when the gateway is the broken link.
const LOOK: &str =
    "make ps (is gateway healthy?), make logs SERVICE=gateway, curl -si localhost:8080/readyz";

/// Sends the three requests; the line to print, or the broken link.
pub async fn send(config: &Config, clients: &Clients, ids: &Ids) -> Result<String, Broken> {
    let broken = |problem: String| Broken {
        link: "gateway",
        problem,
        look: LOOK.to_owned(),
    };
    let traceparent = |i: usize| format!("00-{}-{}-01", ids.trace_id, ids.parents[i]);
    // A throwaway account: unique, and a password nobody else knows.
    let email = format!("verify-{:012x}@example.com", rand::random::<u64>() >> 16);
    let password = format!("verify-{:032x}", rand::random::<u128>());
    let url = |path: &str| format!("{}{path}", config.gateway);

    let signup = clients
        .http
        .post(url("/api/v1/signup"))
        .header("traceparent", traceparent(0))
        .json(&json!({"email": email, "password": password, "name": "Verify"}));
    let login = clients
        .http
        .post(url("/api/v1/login"))
        .header("traceparent", traceparent(1))
        .json(&json!({"email": email, "password": password}));

    let mut statuses = Vec::new();
    let mut token = String::new();
    for (what, request, expected) in [("sign-up", signup, 201), ("login", login, 200)] {
        let response = request
            .send()
            .await
            .map_err(|e| broken(format!("{what}: cannot reach {}: {e}", config.gateway)))?;
        let status = response.status().as_u16();
        same_trace(&response, ids).map_err(|e| broken(format!("{what}: {e}")))?;
        let body = response.text().await.unwrap_or_default();
        if status != expected {
            return Err(broken(format!(
                "{what} answered {status}, not {expected}: {}",
                crate::clip(&body)
            )));
        }
        if what == "login" {
            token = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|b| b["access_token"].as_str().map(str::to_owned))
                .ok_or_else(|| broken(format!("login answered no access_token: {body}")))?;
        }
        statuses.push(format!("{what} {status}"));
    }
    let me = clients
        .http
        .get(url("/api/v1/users/me"))
        .header("traceparent", traceparent(2))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| broken(format!("profile read: {e}")))?;
    same_trace(&me, ids).map_err(|e| broken(format!("profile read: {e}")))?;
    if me.status() != 200 {
        return Err(broken(format!("profile read answered {}", me.status())));
    }
    statuses.push("profile read 200".into());
    Ok(format!(
        "gateway: {} in trace {}",
        statuses.join(", "),
        ids.trace_id
    ))
}

/// The response's `x-trace-id` is the trace verify chose: the gateway continued it.
fn same_trace(response: &reqwest::Response, ids: &Ids) -> Result<(), String> {
    let header = response
        .headers()
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if header == ids.trace_id {
        Ok(())
    } else {
        Err(format!(
            "x-trace-id is {header:?}, not the trace id sent in traceparent ({}): the gateway \
             does not continue W3C trace context",
            ids.trace_id
        ))
    }
}
