use crate::helpers::TestApp;

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn every_response_names_its_trace_in_w3c_form() {
    let app = TestApp::spawn().await;
    let response = app.get("/").await;
    let traceresponse = header(&response, "traceresponse");
    let trace_id = header(&response, "x-trace-id");
    let parts: Vec<&str> = traceresponse.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceresponse}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], trace_id);
    assert_eq!(parts[2].len(), 16);
    assert!(trace_id.chars().all(|c| c.is_ascii_hexdigit()) && trace_id.len() == 32);
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued() {
    let app = TestApp::spawn().await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = app
        .http
        .get(app.url("/"))
        .header(
            "traceparent",
            format!("00-{caller_trace}-00f067aa0ba902b7-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-trace-id"), caller_trace);
    assert_ne!(
        header(&response, "traceresponse").split('-').nth(2),
        Some("00f067aa0ba902b7"),
        "our own span id"
    );
}

#[tokio::test]
async fn a_malformed_traceparent_starts_a_new_trace() {
    let app = TestApp::spawn().await;
    let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
    let malformed = [
        "garbage".to_owned(),
        "00-xyz-00f067aa0ba902b7-01".to_owned(),
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_owned(),
        // A usable trace id in an otherwise invalid header must not be picked up either.
        format!("00-{caller}-0000000000000000-01"),
        format!("ff-{caller}-00f067aa0ba902b7-01"),
        format!("00-{caller}-00f067aa0ba902b7"),
        format!("00-{caller}-00f067aa0ba902b7-zz"),
        // Field lengths and case are part of the grammar: none of these is continued.
        format!("00-{}-00f067aa0ba902b7-01", &caller[1..]),
        format!("00-{caller}0-00f067aa0ba902b7-01"),
        format!("00-{caller}-0f067aa0ba902b7-01"),
        format!("00-{}-00f067aa0ba902b7-01", caller.to_uppercase()),
        format!("00-{caller}-00f067aa0ba902b7-01-extra"),
    ];
    for bad in &malformed {
        let response = app
            .http
            .get(app.url("/"))
            .header("traceparent", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{bad}");
        let trace_id = header(&response, "x-trace-id");
        assert_eq!(trace_id.len(), 32);
        assert_ne!(trace_id, "00000000000000000000000000000000", "{bad}");
        assert_ne!(
            trace_id, caller,
            "{bad}: a new trace, not the malformed header's"
        );
        assert_ne!(
            trace_id,
            format!("0{}", &caller[1..]),
            "{bad}: not a padded copy of it either"
        );
    }
}

#[tokio::test]
async fn probes_and_scrapes_name_a_trace_that_is_not_sampled() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        let traceresponse = header(&response, "traceresponse");
        assert!(traceresponse.ends_with("-00"), "{path}: {traceresponse}");
    }
    let response = app.http.get(app.url("/")).send().await.unwrap();
    assert!(header(&response, "traceresponse").ends_with("-01"));
}
