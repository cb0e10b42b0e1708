//! W3C Trace Context at every server, table-driven from the spec's grammar: what each of the
//! gateway (HTTP), auth and user (gRPC metadata) does with a `traceparent`/`tracestate` pair.
//! An invalid header never fails a request and is never continued or passed on.

use std::time::Duration;

use proto::auth::v1::ValidateTokenRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::user::v1::GetUserRequest;
use proto::user::v1::user_service_client::UserServiceClient;
use testkit::otlp::{CollectedSpan, OtlpCollector};
use testkit::stack::Stack;

const PARENT: &str = "00f067aa0ba902b7";

/// What the receiver must do with a case's headers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Continue the caller's trace: same trace id, the caller's span as parent, these flags
    /// (hex) in what it reports and sends on, and this `tracestate`.
    Continue {
        flags: &'static str,
        tracestate: &'static str,
    },
    /// Start a new trace (the header is invalid); no `tracestate` is kept.
    Restart,
}

struct Case {
    what: &'static str,
    /// `{T}` stands for this case's own trace id, `{P}` for [`PARENT`].
    traceparent: String,
    tracestate: Option<String>,
    expect: Expect,
}

fn case(what: &'static str, traceparent: &str, tracestate: Option<&str>, expect: Expect) -> Case {
    Case {
        what,
        traceparent: traceparent.to_owned(),
        tracestate: tracestate.map(str::to_owned),
        expect,
    }
}

const SAMPLED: Expect = Expect::Continue {
    flags: "01",
    tracestate: "",
};

fn cases() -> Vec<Case> {
    use Expect::{Continue, Restart};
    let members32: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
    let members33: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let long_key = format!("{}=v", "k".repeat(257));
    let mut cases = vec![
        // traceparent: valid shapes.
        case("version 00, sampled", "00-{T}-{P}-01", None, SAMPLED),
        case(
            "Level 2 random flag kept",
            "00-{T}-{P}-03",
            None,
            Continue {
                flags: "03",
                tracestate: "",
            },
        ),
        case("unknown flags zeroed", "00-{T}-{P}-09", None, SAMPLED),
        case("future version, same shape", "01-{T}-{P}-01", None, SAMPLED),
        case(
            "future version, more fields",
            "cc-{T}-{P}-01-what-the-future-holds",
            None,
            SAMPLED,
        ),
        // traceparent: invalid.
        case("31-digit trace id", "00-{T31}-{P}-01", None, Restart),
        case("33-digit trace id", "00-{T}0-{P}-01", None, Restart),
        case("15-digit parent id", "00-{T}-{P15}-01", None, Restart),
        case("upper-case hex", "00-{TU}-{P}-01", None, Restart),
        case(
            "all-zero trace id",
            "00-00000000000000000000000000000000-{P}-01",
            None,
            Restart,
        ),
        case(
            "all-zero parent id",
            "00-{T}-0000000000000000-01",
            None,
            Restart,
        ),
        case("version ff", "ff-{T}-{P}-01", None, Restart),
        case(
            "version 00 with more fields",
            "00-{T}-{P}-01-extra",
            None,
            Restart,
        ),
        case("no flags", "00-{T}-{P}", None, Restart),
        case("non-hex flags", "00-{T}-{P}-0g", None, Restart),
        case("wrong separators", "00_{T}_{P}_01", None, Restart),
        case("garbage", "garbage", None, Restart),
        // tracestate, with a valid traceparent.
        case(
            "one member kept",
            "00-{T}-{P}-01",
            Some("vendor=value"),
            Continue {
                flags: "01",
                tracestate: "vendor=value",
            },
        ),
        case(
            "members kept in order",
            "00-{T}-{P}-01",
            Some("b=2,a=1"),
            Continue {
                flags: "01",
                tracestate: "b=2,a=1",
            },
        ),
        case(
            "multi-tenant key",
            "00-{T}-{P}-01",
            Some("tenant@system=v"),
            Continue {
                flags: "01",
                tracestate: "tenant@system=v",
            },
        ),
        case(
            "upper-case key: dropped",
            "00-{T}-{P}-01",
            Some("Vendor=v"),
            SAMPLED,
        ),
        case(
            "= in a value: dropped",
            "00-{T}-{P}-01",
            Some("a=b=c"),
            SAMPLED,
        ),
        case(
            "257-character key: dropped",
            "00-{T}-{P}-01",
            Some(&long_key),
            SAMPLED,
        ),
        case(
            "33 members: dropped",
            "00-{T}-{P}-01",
            Some(&members33.join(",")),
            SAMPLED,
        ),
        // tracestate with an invalid traceparent: neither is used.
        case(
            "state without a valid parent",
            "00-{T31}-{P}-01",
            Some("vendor=value"),
            Restart,
        ),
    ];
    let all32 = members32.join(",");
    cases.push(Case {
        what: "32 members kept",
        traceparent: "00-{T}-{P}-01".to_owned(),
        tracestate: Some(all32.clone()),
        expect: Continue {
            flags: "01",
            tracestate: Box::leak(all32.into_boxed_str()),
        },
    });
    cases
}

/// The case's `traceparent` with its placeholders filled in for trace id `trace`.
fn fill(template: &str, trace: &str) -> String {
    template
        .replace("{T31}", &trace[1..])
        .replace("{TU}", &trace.to_uppercase())
        .replace("{T}", trace)
        .replace("{P15}", &PARENT[1..])
        .replace("{P}", PARENT)
}

/// Checks `span` (the receiver's server span for this case) against the expectation.
fn check(target: &str, case: &Case, trace: &str, span: &CollectedSpan) {
    let at = format!("{target}, {}: {:?}", case.what, case.traceparent);
    match case.expect {
        Expect::Continue { flags, tracestate } => {
            assert_eq!(span.trace_id, trace, "{at}: continues the trace");
            assert_eq!(
                span.parent_span_id, PARENT,
                "{at}: the caller's span is the parent"
            );
            assert_eq!(format!("{:02x}", span.flags & 0xff), flags, "{at}: flags");
            assert_eq!(span.trace_state, tracestate, "{at}: tracestate");
        }
        Expect::Restart => {
            assert_ne!(span.trace_id, trace, "{at}: a new trace");
            assert!(
                !span.trace_id.contains(&trace[1..]),
                "{at}: not a padded copy"
            );
            assert!(span.parent_span_id.is_empty(), "{at}: a root span");
            assert!(span.trace_state.is_empty(), "{at}: no tracestate");
        }
    }
}

#[tokio::test]
async fn trace_context_is_kept_to_the_letter_at_the_gateway_and_at_each_grpc_server() {
    let collector = OtlpCollector::start().await;
    let stack = Stack::start(&collector.endpoint()).await;
    let cases = cases();
    let trace_of = |index: usize| format!("4bf92f3577b34da6{:016x}", 0xa3ce_0000 + index);

    // The gateway: its answer names the trace it served (`traceresponse`, `x-trace-id`).
    for (index, case) in cases.iter().enumerate() {
        let trace = trace_of(index);
        let mut request = stack
            .http
            .get(format!("{}/", stack.gateway_url))
            .header("traceparent", fill(&case.traceparent, &trace));
        if let Some(state) = &case.tracestate {
            request = request.header("tracestate", state);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "{}: never fails a request",
            case.what
        );
        let served = testkit::stack::trace_id(&response);
        let traceresponse = response.headers()["traceresponse"]
            .to_str()
            .unwrap()
            .to_owned();
        if let Expect::Continue { flags, .. } = case.expect {
            assert!(
                traceresponse.ends_with(&format!("-{flags}")),
                "{}: {traceresponse}",
                case.what
            );
        }
        let spans = testkit::eventually("the gateway's span", Duration::from_secs(10), || {
            let spans = collector.trace(&served);
            (!spans.is_empty()).then_some(spans)
        })
        .await;
        let server = spans
            .iter()
            .find(|s| s.service == "gateway" && s.kind == 2)
            .unwrap();
        check("gateway", case, &trace, server);
    }

    // auth and user over gRPC, called as the gateway is: each call's server span is the next
    // one that service exports for that method (the calls are sequential).
    let auth = AuthServiceClient::new(stack.grpc_channel("gateway", &stack.auth_grpc).await);
    let user = UserServiceClient::new(stack.grpc_channel("gateway", &stack.user_grpc).await);
    for (target, method) in [("auth", "ValidateToken"), ("user", "GetUser")] {
        for (index, case) in cases.iter().enumerate() {
            let trace = trace_of(index);
            let seen = server_spans(&collector, target, method).len();
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert(
                "traceparent",
                fill(&case.traceparent, &trace).parse().unwrap(),
            );
            if let Some(state) = &case.tracestate {
                metadata.insert("tracestate", state.parse().unwrap());
            }
            let code = if target == "auth" {
                let request = tonic::Request::from_parts(
                    metadata,
                    Default::default(),
                    ValidateTokenRequest {
                        access_token: "not-a-token".to_owned(),
                    },
                );
                auth.clone().validate_token(request).await.map(drop)
            } else {
                let request = tonic::Request::from_parts(
                    metadata,
                    Default::default(),
                    GetUserRequest {
                        id: "00000000-0000-4000-8000-000000000000".to_owned(),
                    },
                );
                user.clone().get_user(request).await.map(drop)
            }
            .map_or_else(|status| status.code(), |()| tonic::Code::Ok);
            assert!(
                matches!(code, tonic::Code::Unauthenticated | tonic::Code::NotFound),
                "{target}, {}: the header does not change the answer ({code:?})",
                case.what
            );
            let span = testkit::eventually(
                &format!("{target}'s span for {}", case.what),
                Duration::from_secs(10),
                || server_spans(&collector, target, method).get(seen).cloned(),
            )
            .await;
            check(target, case, &trace, &span);
        }
    }
}

fn server_spans(collector: &OtlpCollector, service: &str, method: &str) -> Vec<CollectedSpan> {
    collector
        .spans()
        .into_iter()
        .filter(|s| s.service == service && s.kind == 2 && s.name.ends_with(method))
        .collect()
}
