//! The Graph client against a fake Graph: paging (and refusing a nextLink to another host),
//! throttling and faults (Retry-After honoured, counted in attempts, never in seconds),
//! typed errors, and the typed operations the product needs.

mod support;

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use signup_bridge::graph::{AuditQuery, GraphClient, GraphError, Membership, UserPatch};
use signup_bridge::retry::Stop;
use support::fake_graph::{FakeGraph, graph_error};
use support::fake_server::Response;
use support::graph_fakes::GraphFakes;
use uuid::Uuid;

const SAMPLE_PAGE: &str = include_str!("fixtures/samples/directory-audits-page.json");
const USER: &str = "84360e8b-3321-4e37-b9ec-10fccd0263b8";
const GROUP: &str = "0b6f5a2e-8d0c-4a55-b1de-5f4c2b9e7d31";

fn sample_records() -> Vec<Value> {
    serde_json::from_str::<Value>(SAMPLE_PAGE).unwrap()["value"]
        .as_array()
        .unwrap()
        .clone()
}

fn audit(id: &str) -> Value {
    let mut record = sample_records()[0].clone();
    record["id"] = json!(id);
    record
}

fn client(fakes: &GraphFakes) -> GraphClient {
    fakes.graph_client(fakes.credential())
}

fn since() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap().to_utc()
}

#[tokio::test]
async fn pages_are_followed_on_the_graph_host_with_the_filter() {
    let fakes = GraphFakes::start();
    fakes.graph.set_audit_pages(vec![
        sample_records(),
        vec![audit("b1"), audit("b2")],
        vec![audit("c1")],
    ]);
    let records = client(&fakes)
        .directory_audits(&AuditQuery::added_users_since(since()))
        .collect_all()
        .await
        .unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(&ids[2..], ["b1", "b2", "c1"]);
    let requests = fakes.graph.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[0].query["$filter"],
        "activityDisplayName eq 'Add user' and activityDateTime ge 2026-11-20T10:00:00Z"
    );
    assert_eq!(requests[2].query["$skiptoken"], "2");
    assert!(requests.iter().all(|r| r.authorized));
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused_and_gets_no_token() {
    let fakes = GraphFakes::start();
    let elsewhere = FakeGraph::start(&fakes.ca, Default::default());
    fakes
        .graph
        .set_audit_pages(vec![sample_records(), vec![audit("never")]]);
    fakes.graph.set_next_link(&format!(
        "{}v1.0/auditLogs/directoryAudits?$skiptoken=1",
        elsewhere.url()
    ));
    let mut pager = client(&fakes).directory_audits(&AuditQuery::default());
    // The page that carried the link is not lost...
    assert_eq!(pager.next_page().await.unwrap().unwrap().len(), 2);
    // ...then the link is refused.
    match pager.next_page().await.unwrap_err() {
        GraphError::ForeignNextLink { origin, .. } => {
            assert_eq!(origin, elsewhere.url().origin().ascii_serialization())
        }
        other => panic!("{other:?}"),
    }
    assert!(
        elsewhere.requests().is_empty(),
        "nothing, token or not, went to the other host"
    );
    assert_eq!(fakes.graph.requests().len(), 1);

    // Same host name, other scheme: refused too.
    let fakes = GraphFakes::start();
    let http_link = fakes.graph.url().as_str().replace("https://", "http://");
    fakes
        .graph
        .set_next_link(&format!("{http_link}v1.0/auditLogs/directoryAudits?$skiptoken=1"));
    let error = client(&fakes)
        .directory_audits(&AuditQuery::default())
        .collect_all()
        .await
        .unwrap_err();
    assert!(matches!(error, GraphError::ForeignNextLink { .. }), "{error:?}");
}

#[tokio::test]
async fn throttling_honours_retry_after_in_seconds_and_as_a_date() {
    let fakes = GraphFakes::start();
    fakes.graph.set_audit_pages(vec![sample_records()]);
    let client = client(&fakes);
    fakes
        .graph
        .inject(graph_error(429, "TooManyRequests", "Too many requests", "r-429").with_header("retry-after", "1"));
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(1));
    fakes.graph.inject(
        graph_error(503, "ServiceUnavailable", "Service unavailable", "r-503").with_header("retry-after", &date),
    );
    fakes
        .graph
        .inject(graph_error(504, "GatewayTimeout", "Gateway timeout", "r-504").with_header("retry-after", "0"));
    let records = client
        .directory_audits(&AuditQuery::default())
        .collect_all()
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    let requests = fakes.graph.requests();
    assert_eq!(requests.len(), 4, "three refusals, then the page");
    // One logical request: the same client-request-id on every attempt.
    assert!(
        requests
            .iter()
            .all(|r| r.client_request_id == requests[0].client_request_id)
    );
    assert_eq!(fakes.entra.token_requests(), 1);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_cap_stops_at_once_and_says_when_to_come_back() {
    let fakes = GraphFakes::start();
    fakes
        .graph
        .inject(graph_error(429, "TooManyRequests", "Too many requests", "r-1").with_header("retry-after", "3600"));
    let error = client(&fakes).probe_audit_log().await.unwrap_err();
    match &error {
        GraphError::GaveUp {
            status,
            attempts,
            stop,
            retry_after,
            code,
            request_id,
            ..
        } => {
            assert_eq!((*status, *attempts), (429, 1));
            assert_eq!(*stop, Stop::RetryAfterTooLong(Duration::from_secs(3600)));
            assert_eq!(*retry_after, Some(Duration::from_secs(3600)));
            assert_eq!(code.as_deref(), Some("TooManyRequests"));
            assert_eq!(request_id.as_deref(), Some("r-1"));
        }
        other => panic!("{other:?}"),
    }
    assert!(error.is_transient());
    assert_eq!(fakes.graph.requests().len(), 1);
}

#[tokio::test]
async fn server_errors_back_off_until_the_attempts_run_out() {
    let fakes = GraphFakes::start();
    for _ in 0..10 {
        fakes
            .graph
            .inject(Response::json(500, &json!({"error": {"code": "InternalServerError"}})));
    }
    let error = client(&fakes).probe_audit_log().await.unwrap_err();
    match error {
        GraphError::GaveUp {
            status, attempts, stop, ..
        } => {
            assert_eq!((status, attempts, stop), (500, 4, Stop::AttemptsExhausted))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fakes.graph.requests().len(), 4);
}

#[tokio::test]
async fn a_client_error_fails_at_once_with_graphs_code_and_request_ids() {
    let fakes = GraphFakes::start();
    fakes.graph.inject(graph_error(
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
        "d3b9c6c0-1b8e-4e55-9f3c-2b1c8e0a7f11",
    ));
    let error = client(&fakes).probe_audit_log().await.unwrap_err();
    assert_eq!(error.status(), Some(403));
    assert_eq!(error.code(), Some("Authorization_RequestDenied"));
    assert_eq!(error.request_id(), Some("d3b9c6c0-1b8e-4e55-9f3c-2b1c8e0a7f11"));
    assert!(!error.is_transient());
    let requests = fakes.graph.requests();
    assert_eq!(requests.len(), 1, "no retry for 403");
    let GraphError::Api { client_request_id, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(Some(client_request_id), requests[0].client_request_id.as_ref());
    let text = error.to_string();
    assert!(
        text.contains("Authorization_RequestDenied") && text.contains("d3b9c6c0"),
        "{text}"
    );
    assert!(
        !text.contains("Insufficient privileges") && !text.contains("graph-token"),
        "{text}"
    );
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    let fakes = GraphFakes::start();
    fakes.entra.accept_any_scope();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = GraphClient::new(
        fakes.http(),
        url::Url::parse(&format!("https://127.0.0.1:{}", closed.port())).unwrap(),
        fakes.credential(),
    )
    .with_retry_policy(support::graph_fakes::quick_retries());
    match unreachable.probe_audit_log().await.unwrap_err() {
        GraphError::Transport { attempts, reason, .. } => {
            assert_eq!(attempts, 4);
            assert_eq!(reason, "could not connect");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn users_created_since_selects_fields_without_orderby() {
    let fakes = GraphFakes::start();
    fakes
        .graph
        .add_user(json!({"id": USER, "displayName": "unknown", "createdDateTime": "2026-11-20T10:02:22Z"}));
    let users = client(&fakes)
        .users_created_since(since(), &["displayName", "createdDateTime", "identities"])
        .collect_all()
        .await
        .unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id.to_string(), USER);
    let request = &fakes.graph.requests()[0];
    assert_eq!(request.path, "/v1.0/users");
    assert_eq!(request.query["$filter"], "createdDateTime ge 2026-11-20T10:00:00Z");
    assert_eq!(request.query["$select"], "id,displayName,createdDateTime,identities");
    assert!(!request.query.contains_key("$orderby"));
}

#[tokio::test]
async fn a_user_is_read_with_extension_attributes_and_patched() {
    let fakes = GraphFakes::start();
    let extension = "extension_0a1b2c3d4e5f60718293a4b5c6d7e8f9_Newsletter";
    fakes
        .graph
        .add_user(json!({"id": USER, "displayName": "unknown", extension: true}));
    let client = client(&fakes);
    let id: Uuid = USER.parse().unwrap();

    let user = client.get_user(id, &["displayName", extension]).await.unwrap().unwrap();
    assert_eq!(user.extension("Newsletter"), Some(&json!(true)));
    assert_eq!(
        fakes.graph.requests()[0].query["$select"],
        format!("id,displayName,{extension}")
    );

    let mut patch = UserPatch {
        display_name: Some("Jane Doe".into()),
        ..UserPatch::default()
    };
    patch.extension_attributes.insert(extension.into(), json!(false));
    client.patch_user(id, &patch).await.unwrap();
    let sent = fakes.graph.requests().last().unwrap().clone();
    assert_eq!(sent.method, "PATCH");
    assert_eq!(sent.body, json!({"displayName": "Jane Doe", extension: false}));

    let user = client.get_user(id, &["displayName", extension]).await.unwrap().unwrap();
    assert_eq!(user.display_name.as_deref(), Some("Jane Doe"));
    assert_eq!(user.extension("newsletter"), Some(&json!(false)));

    assert!(
        client.get_user(Uuid::new_v4(), &[]).await.unwrap().is_none(),
        "404 is None"
    );
    client.patch_user(id, &UserPatch::default()).await.unwrap();
    assert_eq!(fakes.graph.requests().len(), 4, "an empty patch sends nothing");
}

#[tokio::test]
async fn adding_a_member_twice_is_success() {
    let fakes = GraphFakes::start();
    let client = client(&fakes);
    let (group, user) = (GROUP.parse().unwrap(), USER.parse().unwrap());
    assert_eq!(client.add_group_member(group, user).await.unwrap(), Membership::Added);
    assert_eq!(
        client.add_group_member(group, user).await.unwrap(),
        Membership::AlreadyMember
    );
    assert!(fakes.graph.members(GROUP).contains(USER));
    let request = &fakes.graph.requests()[0];
    assert_eq!(request.path, format!("/v1.0/groups/{GROUP}/members/$ref"));
    assert_eq!(
        request.body["@odata.id"],
        format!("{}v1.0/directoryObjects/{USER}", fakes.graph.url())
    );

    fakes.graph.inject(graph_error(
        400,
        "Request_BadRequest",
        "Invalid object identifier 'x'.",
        "r-9",
    ));
    let error = client.add_group_member(group, user).await.unwrap_err();
    assert_eq!((error.status(), error.code()), (Some(400), Some("Request_BadRequest")));
}
