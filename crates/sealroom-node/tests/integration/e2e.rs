//! End-to-end rounds over real sockets on 127.0.0.1 with mutual TLS: a
//! coordinator, helpers and clients as separate tasks, made by `init`.

use std::time::Duration;

use sealroom_core::QuantSpec;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::{SYNTHETIC, TaskCatalog, synthetic_inputs, synthetic_vector};

fn options(threshold: Option<usize>) -> InitOptions {
    InitOptions {
        helpers: 3,
        clients: 4,
        threshold,
        min_clients: Some(3),
        upload_window_ms: 4000,
        aggregation_window_ms: 4000,
        // A 2-of-3 round with a helper down releases, marked unverified.
        allow_unverified_threshold_release: threshold.is_some(),
        ..InitOptions::default()
    }
}

/// The plaintext twin: the exact sum of the included clients' quantized inputs.
fn plaintext(spec: &QuantSpec, round: u64, included: &[u32], len: usize) -> Vec<f64> {
    let mut sum = vec![0i64; len];
    for &c in included {
        let v = synthetic_vector(&format!("client-{c}"), round, len, spec.clip());
        for (s, q) in sum
            .iter_mut()
            .zip(spec.quantize(&v).expect("finite").values.iter())
        {
            *s += q;
        }
    }
    sum.into_iter().map(|q| spec.dequantize(q)).collect()
}

fn spec_of(fed: &LocalFederation) -> QuantSpec {
    let q = &fed.summary.federation.quantization;
    QuantSpec::new(q.scale_bits, q.clip, q.bits).expect("valid spec")
}

async fn run_mode(threshold: Option<usize>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fed, mut events) = LocalFederation::start(
        dir.path(),
        options(threshold),
        TaskCatalog::with_builtins(),
        synthetic_inputs(4),
    )
    .await
    .expect("federation starts");
    let spec = spec_of(&fed);
    for len in [10u64, 300_000] {
        let outcome = tokio::time::timeout(Duration::from_secs(30), fed.run_round(SYNTHETIC, len))
            .await
            .expect("round finishes in time")
            .expect("round runs");
        if outcome.status != "completed" {
            while let Ok(e) = events.try_recv() {
                eprintln!("client event: {e:?}");
            }
        }
        assert_eq!(
            outcome.status, "completed",
            "{}: {}",
            outcome.reason, outcome.detail
        );
        assert_eq!(outcome.included_clients, vec![0, 1, 2, 3]);
        let expected = plaintext(
            &spec,
            outcome.round_id,
            &outcome.included_clients,
            len as usize,
        );
        assert!(
            outcome.values == expected,
            "secure sum differs from plaintext"
        );
    }
    let text = fed.metrics["coordinator"].render();
    assert!(
        text.contains(
            "sealroom_rounds_total{role=\"coordinator\",outcome=\"completed\",reason=\"\"} 2"
        ),
        "{text}"
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn additive_round_over_mtls_equals_plaintext() {
    run_mode(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_round_over_mtls_equals_plaintext() {
    run_mode(Some(2)).await;
}

fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

async fn start(
    threshold: Option<usize>,
    dir: &std::path::Path,
) -> (
    LocalFederation,
    tokio::sync::mpsc::UnboundedReceiver<(usize, sealroom_node::client_node::ClientEvent)>,
) {
    LocalFederation::start(
        dir,
        options(threshold),
        TaskCatalog::with_builtins(),
        synthetic_inputs(4),
    )
    .await
    .expect("federation starts")
}

fn metric(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Certificates the federation does not vouch for are refused at the TLS
/// handshake; a registered client calling a helper-only RPC is refused by
/// the role check; both are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_expired_and_wrong_role_peers_are_refused_and_counted() {
    use sealroom_node::grpc::pb::UploadChunk;
    use sealroom_node::grpc::pb::coordinator_service_client::CoordinatorServiceClient;
    use sealroom_node::grpc::pb::helper_service_client::HelperServiceClient;
    use sealroom_node::pki::{CertificateAuthority, TlsMaterial, Validity};

    let dir = tempfile::tempdir().expect("tempdir");
    let (fed, _events) = start(None, dir.path()).await;
    let client0 = fed.configs["client-0"].clone();
    let helper_endpoint = fed.summary.federation.helpers[0]
        .endpoint
        .clone()
        .expect("endpoint");
    let coordinator_endpoint = fed
        .summary
        .federation
        .coordinator
        .endpoint
        .clone()
        .expect("endpoint");
    let ca_pem = client0.tls.ca_pem().to_vec();

    // 1. A certificate from another CA.
    let evil =
        CertificateAuthority::generate("evil", Validity::days(1).expect("valid")).expect("CA");
    let leaf = evil
        .issue_leaf(
            "client-0",
            &["localhost", "127.0.0.1"],
            Validity::days(1).expect("valid"),
        )
        .expect("leaf");
    let foreign = TlsMaterial::from_pem(&ca_pem, leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
        .expect("material");
    // 2. An expired certificate from the federation's own CA.
    let ca = CertificateAuthority::load(
        &fed.summary.federation.federation_id,
        &dir.path().join("ca.pem"),
        &dir.path().join("ca.key"),
    )
    .expect("federation CA");
    let old = ca
        .issue_leaf("client-0", &["localhost", "127.0.0.1"], Validity::expired())
        .expect("leaf");
    let expired = TlsMaterial::from_pem(&ca_pem, old.cert_pem.as_bytes(), old.key_pem.as_bytes())
        .expect("material");
    // 3. A valid certificate from the federation CA that federation.toml does not list.
    let stray = ca
        .issue_leaf(
            "stranger",
            &["localhost", "127.0.0.1"],
            Validity::days(1).expect("valid"),
        )
        .expect("leaf");
    let unregistered =
        TlsMaterial::from_pem(&ca_pem, stray.cert_pem.as_bytes(), stray.key_pem.as_bytes())
            .expect("material");

    for material in [&foreign, &expired] {
        let channel =
            sealroom_node::tls::channel_unpinned(material, &helper_endpoint).expect("channel");
        let mut client = HelperServiceClient::new(channel);
        let result = client
            .upload(tokio_stream::iter(vec![UploadChunk {
                data: vec![1, 2, 3],
            }]))
            .await;
        assert!(
            result.is_err(),
            "a certificate outside the federation must be refused"
        );
    }
    // Under TLS 1.3 the client can see the refusal before the server has
    // finished counting it: wait (boundedly) for the count.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let refused = metric(
            &fed.metrics["helper-0"].render(),
            "sealroom_connections_refused_total{reason=\"tls_handshake\"}",
        );
        if refused >= 2 || tokio::time::Instant::now() > deadline {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused >= 2, "both handshakes counted, got {refused}");

    // Refused at the handshake, before any RPC: never a PermissionDenied
    // from a service it should not have reached.
    let channel =
        sealroom_node::tls::channel_unpinned(&unregistered, &helper_endpoint).expect("channel");
    let status = HelperServiceClient::new(channel)
        .upload(tokio_stream::iter(vec![UploadChunk { data: vec![1] }]))
        .await
        .expect_err("unregistered certificate");
    assert_ne!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(
        &fed.metrics["helper-0"].render(),
        "sealroom_connections_refused_total{reason=\"unregistered_certificate\"}",
    ) < 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unregistered certificate is counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A client claiming the helper role.
    let channel =
        sealroom_node::tls::channel_unpinned(&client0.tls, &coordinator_endpoint).expect("channel");
    let status = CoordinatorServiceClient::new(channel)
        .report(sealroom_protocol::pb::SignedEnvelope::default())
        .await
        .expect_err("clients may not report");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let text = fed.metrics["coordinator"].render();
    assert_eq!(
        metric(
            &text,
            "sealroom_requests_refused_total{rpc=\"Report\",reason=\"wrong_role\"}"
        ),
        1,
        "{text}"
    );
    let text = fed.metrics["helper-0"].render();
    assert_eq!(
        metric(
            &text,
            "sealroom_requests_refused_total{rpc=\"Upload\",reason=\"unknown_peer\"}"
        ),
        0,
        "no unregistered certificate reaches a service: {text}"
    );

    // The federation still works.
    let outcome = fed.run_round(SYNTHETIC, 8).await.expect("round runs");
    assert_eq!(outcome.status, "completed");
    fed.shutdown().await;
}

/// Oversized and malformed messages get a clear status; the helper keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_uploads_are_refused_and_the_helper_keeps_serving() {
    use sealroom_node::grpc::pb::UploadChunk;
    use sealroom_node::grpc::pb::helper_service_client::HelperServiceClient;

    let dir = tempfile::tempdir().expect("tempdir");
    let (fed, _events) = start(None, dir.path()).await;
    let client0 = fed.configs["client-0"].clone();
    let endpoint = fed.summary.federation.helpers[1]
        .endpoint
        .clone()
        .expect("endpoint");
    let channel = sealroom_node::tls::channel_unpinned(&client0.tls, &endpoint).expect("channel");
    let mut helper = HelperServiceClient::new(channel).max_encoding_message_size(64 << 20);

    // This client owes the helper nothing (no round is open): no more than a
    // seed upload is read, and a bigger one is told to retry once the round
    // is known.
    let big = vec![
        UploadChunk {
            data: vec![0u8; 1 << 20],
        },
        UploadChunk {
            data: vec![0u8; 1 << 20],
        },
    ];
    let status = helper
        .upload(tokio_stream::iter(big))
        .await
        .expect_err("oversized");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("retry"), "{}", status.message());
    // One gRPC message above the transport limit.
    let huge = vec![UploadChunk {
        data: vec![0u8; 9 << 20],
    }];
    let status = helper
        .upload(tokio_stream::iter(huge))
        .await
        .expect_err("over the message limit");
    assert!(
        matches!(
            status.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange | tonic::Code::Internal
        ),
        "{status:?}"
    );
    // Garbage that is not an upload.
    let status = helper
        .upload(tokio_stream::iter(vec![UploadChunk {
            data: vec![0xff, 0xff, 0xff, 0x7f],
        }]))
        .await
        .expect_err("malformed");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("malformed upload"),
        "{}",
        status.message()
    );

    let outcome = fed.run_round(SYNTHETIC, 1000).await.expect("round runs");
    assert_eq!(
        outcome.status, "completed",
        "the helper still serves: {}",
        outcome.detail
    );
    let text = fed.metrics["helper-1"].render();
    assert!(
        metric(
            &text,
            "sealroom_uploads_total{result=\"rejected\",reason=\"too_large\"}"
        ) >= 1,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "sealroom_uploads_total{result=\"rejected\",reason=\"malformed\"}"
        ) >= 1,
        "{text}"
    );
    fed.shutdown().await;
}

/// A helper killed after sending its receipts: the additive round aborts with
/// a signed record naming it; restarted, it has not answered that round and
/// the next round succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_helper_aborts_the_additive_round_and_recovers() {
    use sealroom_node::client_node::ClientEvent;

    let dir = tempfile::tempdir().expect("tempdir");
    let (mut fed, mut events) = start(None, dir.path()).await;
    // With one client offline the helpers wait for the upload deadline before
    // reporting, which leaves time to kill one after its receipts went out.
    fed.stop_client(3).await;
    let admin = fed.admin().expect("admin").clone();
    let round = tokio::spawn(async move {
        sealroom_node::local::start_round(&admin, SYNTHETIC, 64, Vec::new()).await
    });
    let mut uploaded = 0;
    while uploaded < 3 {
        match tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("clients upload")
            .expect("events")
        {
            (_, ClientEvent::Uploaded { .. }) => uploaded += 1,
            (_, other) => panic!("unexpected client event {other:?}"),
        }
    }
    fed.stop_helper(1).await;
    let outcome = round.await.expect("joined").expect("round ran");
    assert_eq!(outcome.status, "aborted");
    assert_eq!(outcome.reason, "helper_missing");
    let record = outcome.record.expect("signed record");
    let key = fed
        .summary
        .federation
        .coordinator
        .signing_key
        .clone()
        .expect("key");
    let key = sealroom_protocol::VerifyingKey::from_bytes(
        &hex::decode(key).expect("hex").try_into().expect("32 bytes"),
    )
    .expect("key");
    let abort = key
        .verify::<sealroom_protocol::pb::AbortRecord>(&record)
        .expect("signed by the coordinator");
    assert_eq!(abort.message().missing_helpers, vec![1]);

    fed.start_helper(1).await.expect("restarts");
    fed.start_client(3).await.expect("client back");
    let next = fed.run_round(SYNTHETIC, 64).await.expect("round runs");
    assert_eq!(next.status, "completed", "{}", next.detail);
    assert_eq!(next.round_id, outcome.round_id + 1);
    let store =
        sealroom_store::Store::open_sqlite(&fed.configs["helper-1"].data_dir.join("sealroom.db"))
            .await
            .expect("store");
    let state = store.helper_state().await.expect("state");
    let answered: Vec<bool> = state.rounds.iter().map(|r| r.answered.is_some()).collect();
    assert_eq!(
        answered,
        vec![false, true],
        "never answered the aborted round; answered the next once"
    );
    fed.shutdown().await;
}

/// Issue #13 finding 3: an additive-mode helper that restarts inside the
/// upload window, after it took the descriptor and the shares, rejoins the
/// round from its store: the round completes with every upload, and the sum
/// is the plaintext one. A helper down when a round starts and back inside
/// the window is offered the descriptor again and takes part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_restarted_in_the_upload_window_rejoins_the_round() {
    use sealroom_node::client_node::ClientEvent;

    let dir = tempfile::tempdir().expect("tempdir");
    let (mut fed, mut events) = start(None, dir.path()).await;
    let spec = spec_of(&fed);
    // With one client offline the helpers wait for the upload deadline
    // before reporting: the restart happens inside the window.
    fed.stop_client(3).await;
    let admin = fed.admin().expect("admin").clone();
    let round = tokio::spawn(async move {
        sealroom_node::local::start_round(&admin, SYNTHETIC, 64, Vec::new()).await
    });
    let mut uploaded = 0;
    while uploaded < 3 {
        match tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("clients upload")
            .expect("events")
        {
            (_, ClientEvent::Uploaded { .. }) => uploaded += 1,
            (_, other) => panic!("unexpected client event {other:?}"),
        }
    }
    fed.stop_helper(1).await;
    fed.start_helper(1).await.expect("restarts");
    let outcome = round.await.expect("joined").expect("round ran");
    assert_eq!(
        outcome.status, "completed",
        "{}: {}",
        outcome.reason, outcome.detail
    );
    assert_eq!(outcome.included_clients, vec![0, 1, 2]);
    assert_eq!(
        outcome.values,
        plaintext(&spec, outcome.round_id, &outcome.included_clients, 64)
    );

    // A helper down when the round starts, back a moment later: the
    // coordinator offers it the descriptor again within the upload window.
    fed.stop_helper(2).await;
    let admin = fed.admin().expect("admin").clone();
    let round = tokio::spawn(async move {
        sealroom_node::local::start_round(&admin, SYNTHETIC, 64, Vec::new()).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    fed.start_helper(2).await.expect("restarts");
    let outcome = round.await.expect("joined").expect("round ran");
    assert_eq!(
        outcome.status, "completed",
        "{}: {}",
        outcome.reason, outcome.detail
    );
    assert_eq!(outcome.included_clients, vec![0, 1, 2]);
    assert_eq!(
        outcome.values,
        plaintext(&spec, outcome.round_id, &outcome.included_clients, 64)
    );
    fed.shutdown().await;
}

/// Issue #13, finding 1: a helper that reported in a round and restarts
/// before answering re-sends its report (the same signed bytes). The
/// coordinator takes it as no news and nothing is logged twice: afterwards
/// every node's audit log verifies, and the coordinator's holds that
/// helper's report for the round once although it received it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_re_sent_after_a_helper_restart_keeps_every_audit_log_verifiable() {
    use sealroom_protocol::pb;
    use sealroom_store::{Store, verify_chain};

    let dir = tempfile::tempdir().expect("tempdir");
    let (mut fed, _events) = start(None, dir.path()).await;
    // With helper 2 down the additive round waits for its report until the
    // report deadline, while helpers 0 and 1 have reported and wait for an
    // inclusion set that never comes.
    fed.stop_helper(2).await;
    let admin = fed.admin().expect("admin").clone();
    let round = tokio::spawn(async move {
        sealroom_node::local::start_round(&admin, SYNTHETIC, 16, Vec::new()).await
    });
    let coordinator_db = fed.configs["coordinator"].data_dir.join("sealroom.db");
    let helper0 = fed.configs["helper-0"].id;
    let coordinator = Store::open_sqlite(&coordinator_db).await.expect("store");
    let reports_from_helper0 = |coordinator: &Store| {
        let coordinator = coordinator.clone();
        async move {
            let mut n = 0;
            for r in coordinator.archived_rounds().await.expect("rounds") {
                for (_, step) in coordinator.archived_steps(r).await.expect("steps") {
                    if let Some(pb::archived_step::Input::Inbound(m)) = step.input
                        && m.kind == pb::MessageKind::Report as i32
                        && m.from == helper0.0
                    {
                        n += 1;
                    }
                }
            }
            n
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reports_from_helper0(&coordinator).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "helper-0 never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fed.stop_helper(0).await;
    fed.start_helper(0).await.expect("restarts");
    let outcome = round.await.expect("joined").expect("round ran");
    assert_eq!(outcome.status, "aborted", "{}", outcome.detail);
    assert_eq!(outcome.reason, "helper_missing");
    assert_eq!(
        reports_from_helper0(&coordinator).await,
        2,
        "the restarted helper re-sent its report and the coordinator took it"
    );
    coordinator.close().await;
    fed.start_helper(2).await.expect("restarts");
    let names: Vec<String> = fed
        .configs
        .iter()
        .filter(|(_, c)| c.signing_key.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    let data: Vec<std::path::PathBuf> = names
        .iter()
        .map(|n| fed.configs[n].data_dir.join("sealroom.db"))
        .collect();
    fed.shutdown().await;
    for (name, db) in names.iter().zip(&data) {
        let store = Store::open_sqlite(db).await.expect("store");
        let entries = store.audit_entries(None).await.expect("reads");
        let (_, violations) = verify_chain(&entries);
        assert_eq!(violations, Vec::new(), "{name}'s audit log");
        if name == "coordinator" {
            let reports = entries
                .iter()
                .filter(|e| e.kind == "report" && e.round_id == Some(outcome.round_id))
                .count();
            assert_eq!(reports, 2, "one report each from helpers 0 and 1");
        }
        store.close().await;
    }
}

/// Threshold 2-of-3 with a helper down completes; a restarted coordinator
/// continues with the next round id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_tolerates_a_down_helper_and_coordinator_restart_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    logs();
    let (mut fed, _events) = start(Some(2), dir.path()).await;
    let spec = spec_of(&fed);
    fed.stop_helper(2).await;
    let first = fed.run_round(SYNTHETIC, 100).await.expect("round runs");
    assert_eq!(first.status, "completed", "{}", first.detail);
    assert_eq!(
        first.values,
        plaintext(&spec, first.round_id, &first.included_clients, 100)
    );
    fed.start_helper(2).await.expect("restarts");
    fed.stop_coordinator().await;
    fed.start_coordinator().await.expect("restarts");
    let second = fed.run_round(SYNTHETIC, 100).await.expect("round runs");
    assert_eq!(second.round_id, first.round_id + 1);
    assert_eq!(second.status, "completed", "{}", second.detail);
    fed.shutdown().await;
}
