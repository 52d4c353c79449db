//! The audit log and deterministic replay over real nodes (mTLS on
//! loopback): rounds with a dropped helper, an absent client and an abort;
//! every node's chain and signatures verify; every role replays every round
//! byte for byte; a tampered archive diverges; and no share, seed, key or
//! input ever reaches an audit log.

use std::time::Duration;

use prost::Message as _;
use sealroom_node::config::Role;
use sealroom_node::init::InitOptions;
use sealroom_node::local::{LocalFederation, open_context};
use sealroom_node::metrics::Metrics;
use sealroom_node::replay::{ReplayError, replay_with};
use sealroom_node::tasks::{SYNTHETIC, TaskCatalog, synthetic_inputs};
use sealroom_protocol::pb;
use sealroom_protocol::pb::archived_step::Input;
use sealroom_store::verify_chain;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_chains_verify_and_every_role_replays_every_round() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = InitOptions {
        helpers: 3,
        clients: 4,
        threshold: Some(2),
        min_clients: Some(3),
        upload_window_ms: 1500,
        aggregation_window_ms: 3000,
        // Round two runs with one of three helpers down: two answers that
        // cannot be checked against each other, released marked unverified.
        allow_unverified_threshold_release: true,
        ..InitOptions::default()
    };
    let inputs = synthetic_inputs(4);
    let (mut fed, _events) =
        LocalFederation::start(dir.path(), options, TaskCatalog::with_builtins(), inputs)
            .await
            .expect("federation starts");
    let run = async |fed: &LocalFederation| {
        tokio::time::timeout(Duration::from_secs(30), fed.run_round(SYNTHETIC, 24))
            .await
            .expect("round ends in time")
            .expect("round runs")
    };
    let first = run(&fed).await;
    assert_eq!(first.status, "completed", "{}", first.detail);
    // A helper goes down and a client is absent: 2-of-3 still completes.
    fed.stop_helper(2).await;
    fed.stop_client(3).await;
    let second = run(&fed).await;
    assert_eq!(second.status, "completed", "{}", second.detail);
    assert_eq!(second.included_clients.len(), 3);
    // Another client leaves: too few clients, the round aborts.
    fed.stop_client(2).await;
    let third = run(&fed).await;
    assert_eq!(third.status, "aborted");
    assert_eq!(third.reason, "not_enough_clients");
    let configs = fed.configs.clone();
    fed.shutdown().await;

    let rounds = [first.round_id, second.round_id, third.round_id];
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    let mut logs: Vec<Vec<u8>> = Vec::new();
    for config in configs.values() {
        if config.role == Role::Admin {
            continue;
        }
        if let Some(key) = &config.signing_key {
            secrets.push(key.expose_secret_bytes().to_vec());
        }
        let ctx = open_context(config, Metrics::new()).await.expect("opens");
        let entries = ctx.store.audit_entries(None).await.expect("reads");
        let (summary, violations) = verify_chain(&entries);
        assert_eq!(violations, Vec::new(), "{}", config.name);
        match config.role {
            Role::Coordinator => {
                assert!(rounds.iter().all(|r| summary.rounds.contains(r)));
                assert_eq!(summary.aborts.get("not_enough_clients"), Some(&1));
                assert_eq!(summary.by_kind.get("result"), Some(&2));
                assert!(summary.by_kind.get("checkpoint").copied().unwrap_or(0) >= 3);
                assert_eq!(
                    summary.unsigned_tail, 0,
                    "every round ends with a checkpoint"
                );
            }
            Role::Helper => {
                assert!(summary.by_kind.get("receipt").copied().unwrap_or(0) >= 3);
                assert!(summary.by_kind.get("checkpoint").copied().unwrap_or(0) >= 1);
            }
            _ => assert!(entries.is_empty(), "clients keep no audit log"),
        }
        logs.extend(entries.iter().map(|e| e.artifact.clone()));

        for &round in &rounds {
            match replay_with(&ctx, round).await {
                Ok(report) => {
                    assert!(report.steps > 0);
                    assert_eq!(report.divergence, None, "{report}");
                }
                Err(ReplayError::NoArchive { .. }) => {
                    // Nodes that were down took no part.
                    let name = config.name.as_str();
                    let down = match name {
                        "helper-2" | "client-3" => round != first.round_id,
                        "client-2" => round == third.round_id,
                        _ => false,
                    };
                    assert!(down, "{} has no archive for round {round}", config.name);
                }
                Err(e) => panic!("{}: {e}", config.name),
            }
            for (_, step) in ctx.store.archived_steps(round).await.expect("reads") {
                match step.input {
                    Some(Input::Participate(p)) => {
                        secrets.push(p.seed.clone());
                        secrets.extend(p.input.chunks(16).map(<[u8]>::to_vec));
                    }
                    Some(Input::Inbound(m)) if m.kind == pb::MessageKind::Upload as i32 => {
                        assert!(m.stored && m.bytes.is_empty(), "a share is archived once");
                        let bytes = ctx
                            .store
                            .helper_upload(round, m.client_index)
                            .await
                            .expect("reads")
                            .expect("stored");
                        let upload = pb::Upload::decode(bytes.expose()).expect("decodes");
                        match upload.share {
                            Some(pb::upload::Share::Seed(s)) => secrets.push(s),
                            Some(pb::upload::Share::Vector(v)) => {
                                secrets.extend(v.chunks(16).map(<[u8]>::to_vec))
                            }
                            None => {}
                        }
                    }
                    _ => {}
                }
            }
        }
        ctx.store.close().await;
    }
    assert!(secrets.len() > 20, "the secrets to look for were found");
    for secret in &secrets {
        for log in &logs {
            assert!(!contains(log, secret), "a secret reached an audit log");
        }
    }

    // A tampered archive no longer replays: change client-0's seed.
    let client = &configs["client-0"];
    let ctx = open_context(client, Metrics::new()).await.expect("opens");
    let db = client.data_dir.join("sealroom.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("opens the database");
    let steps: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT step, data FROM round_archive WHERE round_id = $1 ORDER BY step")
            .bind(first.round_id as i64)
            .fetch_all(&pool)
            .await
            .expect("archived");
    // A client's steps: the descriptor, then its participation.
    let (step, mut archived) = steps
        .iter()
        .map(|(step, data)| {
            (
                *step,
                pb::ArchivedStep::decode(data.as_slice()).expect("decodes"),
            )
        })
        .find(|(_, s)| matches!(s.input, Some(Input::Participate(_))))
        .expect("the client took part");
    if let Some(Input::Participate(p)) = archived.input.as_mut() {
        p.seed[0] ^= 1;
    }
    sqlx::query("UPDATE round_archive SET data = $1 WHERE round_id = $2 AND step = $3")
        .bind(archived.encode_to_vec())
        .bind(first.round_id as i64)
        .bind(step)
        .execute(&pool)
        .await
        .expect("tampers");
    pool.close().await;
    let report = replay_with(&ctx, first.round_id).await.expect("replays");
    let divergence = report.divergence.expect("the tampered seed diverges");
    assert_eq!(divergence.step, step as usize);
    assert!(
        divergence.detail.contains("upload"),
        "{}",
        divergence.detail
    );
}
