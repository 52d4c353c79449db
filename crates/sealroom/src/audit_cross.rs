//! Do several nodes' audit logs agree? Each log is first verified on its
//! own (chain, signatures, pinned keys); this module then compares what the
//! nodes say they signed, sent and received.
//!
//! The signed artifacts that exist once per round and signer — a
//! descriptor, a helper's report, an inclusion set, a result or abort — are
//! compared across every log that holds them:
//!
//! * **Equivocation.** Two different artifacts of one kind, for one round,
//!   signed by the same key, anywhere in the logs: the signer told parties
//!   different things (a coordinator sending helpers different descriptors
//!   or inclusion sets, a helper sending different reports). Ed25519 is
//!   deterministic and every re-send is of the stored bytes, so an honest
//!   node never produces two.
//! * **Missing from its signer's log.** An artifact that another node
//!   logged as received but that the node holding the signing key never
//!   logged, for a round its log covers: every node appends what it signs
//!   before sending it, so the signer's log lost an entry (or the artifact
//!   was signed outside the node).
//!
//! An artifact that a signer logged but a peer did not (a report that
//! arrived late, a helper down when the result was published) is normal and
//! only counted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use prost::Message as _;
use sealroom_protocol::pb;
use sealroom_store::{AuditEntry, AuditSummary, verify_chain};

/// The kinds that exist once per round and signer.
const COMPARED: [&str; 5] = ["descriptor", "report", "inclusion_set", "result", "abort"];

/// One node's verified log.
pub struct NodeLog {
    /// How the operator named it (a config file, an export file).
    pub source: String,
    /// What `verify_chain` found (owner, keys).
    pub summary: AuditSummary,
    /// Its entries.
    pub entries: Vec<AuditEntry>,
}

impl NodeLog {
    /// The owner's name, or the source when the log names none.
    pub fn name(&self) -> String {
        self.summary
            .node
            .as_ref()
            .map_or_else(|| self.source.clone(), |(_, name)| name.clone())
    }

    /// The owner's own key id (hex), if the log names it.
    fn own_key(&self) -> Option<&str> {
        self.summary
            .keys
            .iter()
            .find(|k| k.own)
            .map(|k| k.key_id.as_str())
    }
}

/// A way in which the logs disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disagreement {
    /// One signer, one round, one kind, more than one artifact.
    Equivocation {
        /// The round.
        round: u64,
        /// The artifact kind.
        kind: String,
        /// The signer (name if known, else key id).
        signer: String,
        /// Each distinct artifact (BLAKE3 digest, hex) and the logs holding it.
        versions: Vec<(String, Vec<String>)>,
    },
    /// Logged by others, missing from the log of the node that signed it.
    MissingFromSigner {
        /// The round.
        round: u64,
        /// The artifact kind.
        kind: String,
        /// The signer's name.
        signer: String,
        /// The logs that hold it.
        held_by: Vec<String>,
    },
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Disagreement::Equivocation {
                round,
                kind,
                signer,
                versions,
            } => {
                write!(
                    f,
                    "round {round}: {signer} signed {} different {kind} artifacts:",
                    versions.len()
                )?;
                for (digest, holders) in versions {
                    write!(f, " {} held by {};", &digest[..16], holders.join(", "))?;
                }
                Ok(())
            }
            Disagreement::MissingFromSigner {
                round,
                kind,
                signer,
                held_by,
            } => write!(
                f,
                "round {round}: the {kind} signed by {signer} is in the log of {} but not in {signer}'s own",
                held_by.join(", ")
            ),
        }
    }
}

/// What the comparison found.
#[derive(Debug, Default)]
pub struct CrossSummary {
    /// Distinct rounds named by any log.
    pub rounds: usize,
    /// Distinct (round, kind, signer) artifacts compared.
    pub artifacts: usize,
    /// Artifacts a signer logged that some peer log does not hold (normal).
    pub not_received: usize,
    /// What disagrees; empty when the logs agree.
    pub disagreements: Vec<Disagreement>,
}

/// Compares verified logs; see the module docs.
pub fn cross_check(logs: &[NodeLog]) -> CrossSummary {
    // Key id (hex) → signer name, from every log's key entries.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for log in logs {
        for k in &log.summary.keys {
            names.insert(k.key_id.clone(), k.name.clone());
        }
    }
    // (round, kind, signer key id) → artifact digest → logs holding it.
    type Versions = BTreeMap<String, BTreeSet<usize>>;
    let mut seen: BTreeMap<(u64, String, String), Versions> = BTreeMap::new();
    let mut rounds = BTreeSet::new();
    for (i, log) in logs.iter().enumerate() {
        for e in &log.entries {
            let Some(round) = e.round_id else { continue };
            rounds.insert(round);
            if !COMPARED.contains(&e.kind.as_str()) {
                continue;
            }
            let Ok(env) = pb::SignedEnvelope::decode(e.artifact.as_slice()) else {
                // verify_chain refuses such an entry before we get here.
                continue;
            };
            let digest = blake3::hash(&e.artifact).to_hex().to_string();
            seen.entry((round, e.kind.clone(), hex::encode(&env.key_id)))
                .or_default()
                .entry(digest)
                .or_default()
                .insert(i);
        }
    }
    // The first round each log names: rounds before it predate the log.
    let first_round: Vec<Option<u64>> = logs
        .iter()
        .map(|l| l.entries.iter().filter_map(|e| e.round_id).min())
        .collect();
    let holders =
        |set: &BTreeSet<usize>| -> Vec<String> { set.iter().map(|&i| logs[i].name()).collect() };

    let mut summary = CrossSummary {
        rounds: rounds.len(),
        artifacts: seen.len(),
        ..CrossSummary::default()
    };
    for ((round, kind, key), versions) in &seen {
        let signer = names.get(key).cloned().unwrap_or_else(|| key.clone());
        if versions.len() > 1 {
            summary.disagreements.push(Disagreement::Equivocation {
                round: *round,
                kind: kind.clone(),
                signer: signer.clone(),
                versions: versions
                    .iter()
                    .map(|(digest, set)| (digest.clone(), holders(set)))
                    .collect(),
            });
            continue;
        }
        let held: BTreeSet<usize> = versions.values().flatten().copied().collect();
        // The signer's own log, if it is among those compared.
        let signer_log = logs.iter().position(|l| l.own_key() == Some(key.as_str()));
        if let Some(s) = signer_log {
            let covers = first_round[s].is_some_and(|first| *round >= first);
            if covers && !held.contains(&s) {
                summary.disagreements.push(Disagreement::MissingFromSigner {
                    round: *round,
                    kind: kind.clone(),
                    signer,
                    held_by: holders(&held),
                });
                continue;
            }
        }
        if held.len() < logs.len() {
            summary.not_received += 1;
        }
    }
    summary
}

/// `sealroom audit cross-check`.
#[derive(Args, Debug)]
pub struct CrossCheckArgs {
    /// A node's config file (its store is found from it); repeat for each
    /// node on this machine.
    #[arg(long, value_name = "FILE")]
    config: Vec<PathBuf>,
    /// A log written by `sealroom audit export` on a node's machine; repeat
    /// for each node. Its hashes and signatures are checked as the node's
    /// own store would be.
    #[arg(long, value_name = "FILE")]
    export: Vec<PathBuf>,
    /// federation.toml to pin every log's signer keys against.
    #[arg(long, value_name = "FILE")]
    federation: Option<PathBuf>,
}

/// Runs `sealroom audit cross-check`: verifies every log on its own, then
/// compares them. Fails on the first log that does not verify, and on any
/// disagreement (all are listed).
pub async fn run(args: &CrossCheckArgs) -> anyhow::Result<()> {
    if args.config.len() + args.export.len() < 2 {
        bail!("name at least two logs (--config FILE or --export FILE, each repeatable)");
    }
    let mut logs = Vec::new();
    for file in &args.config {
        let store = crate::audit_cmd::store_of_config(file).await?;
        let entries = store.audit_entries(None).await?;
        store.close().await;
        logs.push(verified(file.display().to_string(), entries, args)?);
    }
    for file in &args.export {
        let entries = read_export(file)?;
        logs.push(verified(file.display().to_string(), entries, args)?);
    }
    for log in &logs {
        println!(
            "{}: {} entries, {} rounds, chain and signatures verified{}",
            log.name(),
            log.summary.entries,
            log.summary.rounds.len(),
            if args.federation.is_some() {
                ", keys pinned"
            } else {
                ""
            }
        );
    }
    let summary = cross_check(&logs);
    println!(
        "compared {} artifacts of {} rounds across {} logs; {} not held by every log (sent but not received, or a node down)",
        summary.artifacts,
        summary.rounds,
        logs.len(),
        summary.not_received
    );
    if summary.disagreements.is_empty() {
        println!("the logs agree");
        return Ok(());
    }
    for d in &summary.disagreements {
        println!("DISAGREE: {d}");
    }
    bail!(
        "the logs disagree in {} place(s): see the runbook, \"Suspected tampering\"",
        summary.disagreements.len()
    )
}

fn verified(
    source: String,
    entries: Vec<AuditEntry>,
    args: &CrossCheckArgs,
) -> anyhow::Result<NodeLog> {
    if entries.is_empty() {
        bail!("{source}: the audit log is empty (a client's store, or the wrong database)");
    }
    let (summary, violations) = verify_chain(&entries);
    // A log that does not verify on its own cannot be compared: its bad
    // entries are named, as `audit verify` would (one operator-acknowledged
    // breakage included: the entries stay bad).
    if let Some(first) = violations.first() {
        for v in &violations {
            eprintln!("{source}: {v}");
        }
        bail!(
            "{}: {source}: {} bad entries of {} (the first: {first}); run `sealroom audit verify` on it",
            if sealroom_store::unacknowledged(&violations).is_empty() {
                "BROKEN"
            } else {
                "TAMPERED"
            },
            violations.len(),
            summary.entries
        );
    }
    if let Some(file) = &args.federation {
        crate::audit_cmd::pin(&summary, file).with_context(|| source.clone())?;
    }
    Ok(NodeLog {
        source,
        summary,
        entries,
    })
}

/// Reads `sealroom audit export` output back into entries; every field the
/// chain hash covers must be there (a line that lacks one is an error
/// naming the line).
pub fn read_export(file: &Path) -> anyhow::Result<Vec<AuditEntry>> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut entries = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = sealroom_store::audit::entry_from_export(&line)
            .map_err(|problem| anyhow::anyhow!("{} line {}: {problem}", file.display(), i + 1))?;
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealroom_store::audit::KeySeen;

    /// A malformed export line is an error naming the file's line and the
    /// field, never a panic and never a half-read log.
    #[test]
    fn malformed_exports_are_refused_with_the_line_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = serde_json::json!({
            "seq": 0, "at_ms": 1, "kind": "key", "round_id": null,
            "artifact": "00", "prev_hash": "00".repeat(32), "hash": "11".repeat(32),
        });
        let cases: [(&str, serde_json::Value, &str); 6] = [
            ("not json", serde_json::Value::Null, "line 2"),
            ("no seq", serde_json::json!({"seq": null}), "`seq`"),
            (
                "bad hex",
                serde_json::json!({"artifact": "zz"}),
                "`artifact` is not hex",
            ),
            (
                "short hash",
                serde_json::json!({"hash": "11"}),
                "`hash` is not 32 bytes",
            ),
            (
                "round as text",
                serde_json::json!({"round_id": "7"}),
                "`round_id` is not a number",
            ),
            (
                "kind as number",
                serde_json::json!({"kind": 3}),
                "`kind` is not a string",
            ),
        ];
        for (name, change, expected) in cases {
            let second = if name == "not json" {
                "{not json".to_string()
            } else {
                let mut line = good.clone();
                for (k, v) in change.as_object().expect("object") {
                    if v.is_null() {
                        line.as_object_mut().expect("object").remove(k);
                    } else {
                        line[k] = v.clone();
                    }
                }
                line.to_string()
            };
            let file = dir.path().join(format!("{name}.jsonl"));
            std::fs::write(&file, format!("{good}\n{second}\n")).expect("write");
            let error = format!("{:#}", read_export(&file).expect_err(name));
            assert!(
                error.contains(expected) && error.contains("line 2"),
                "{name}: {error}"
            );
        }
        let missing = dir.path().join("absent.jsonl");
        assert!(
            format!("{:#}", read_export(&missing).expect_err("absent")).contains("absent.jsonl")
        );
    }

    fn envelope(key: u8, body: &[u8]) -> Vec<u8> {
        pb::SignedEnvelope {
            label: "test".into(),
            body: body.to_vec(),
            key_id: vec![key; 32],
            signature: vec![0; 64],
        }
        .encode_to_vec()
    }

    fn entry(kind: &str, round: u64, key: u8, body: &[u8]) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at_ms: 0,
            kind: kind.into(),
            round_id: Some(round),
            artifact: envelope(key, body),
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    fn key(name: &str, k: u8, own: bool) -> KeySeen {
        KeySeen {
            role: if name == "coordinator" {
                "coordinator"
            } else {
                "helper"
            }
            .into(),
            name: name.into(),
            key_id: hex::encode([k; 32]),
            own,
        }
    }

    /// Coordinator key 1, helpers key 2 and 3.
    fn log(owner: &str, own: u8, entries: Vec<AuditEntry>) -> NodeLog {
        let keys = [("coordinator", 1), ("helper-0", 2), ("helper-1", 3)]
            .into_iter()
            .map(|(n, k)| key(n, k, k == own))
            .collect();
        NodeLog {
            source: format!("{owner}.toml"),
            summary: AuditSummary {
                node: Some(("x".into(), owner.into())),
                keys,
                ..AuditSummary::default()
            },
            entries,
        }
    }

    fn honest() -> Vec<NodeLog> {
        let mut coordinator = vec![entry("descriptor", 1, 1, b"d1")];
        let mut helpers = vec![Vec::new(), Vec::new()];
        for (h, key) in [(0, 2u8), (1, 3u8)] {
            helpers[h].push(entry("descriptor", 1, 1, b"d1"));
            helpers[h].push(entry("receipt", 1, key, b"r"));
            helpers[h].push(entry("report", 1, key, &[b'p', key]));
            coordinator.push(entry("report", 1, key, &[b'p', key]));
        }
        coordinator.push(entry("inclusion_set", 1, 1, b"i1"));
        coordinator.push(entry("result", 1, 1, b"s1"));
        for h in &mut helpers {
            h.push(entry("inclusion_set", 1, 1, b"i1"));
            h.push(entry("result", 1, 1, b"s1"));
        }
        let [h0, h1] = <[Vec<AuditEntry>; 2]>::try_from(helpers).expect("two");
        vec![
            log("coordinator", 1, coordinator),
            log("helper-0", 2, h0),
            log("helper-1", 3, h1),
        ]
    }

    #[test]
    fn honest_logs_agree() {
        let s = cross_check(&honest());
        assert_eq!(s.disagreements, Vec::new());
        assert_eq!(s.rounds, 1);
        // One descriptor, two reports, one inclusion set, one result.
        assert_eq!(s.artifacts, 5);
        // Each report is in its helper's and the coordinator's log only.
        assert_eq!(s.not_received, 2);
    }

    #[test]
    fn a_coordinator_that_equivocates_is_named() {
        let mut logs = honest();
        // helper-1 was sent another inclusion set.
        for e in &mut logs[2].entries {
            if e.kind == "inclusion_set" {
                *e = entry("inclusion_set", 1, 1, b"i1-other");
            }
        }
        let s = cross_check(&logs);
        assert_eq!(s.disagreements.len(), 1, "{:?}", s.disagreements);
        let text = s.disagreements[0].to_string();
        assert!(
            text.contains("round 1: coordinator signed 2 different inclusion_set"),
            "{text}"
        );
        assert!(text.contains("helper-1"), "{text}");
    }

    #[test]
    fn an_artifact_missing_from_its_signers_log_is_named() {
        let mut logs = honest();
        // helper-0's log lost its report (the coordinator holds it).
        logs[1].entries.retain(|e| e.kind != "report");
        let s = cross_check(&logs);
        assert_eq!(
            s.disagreements,
            vec![Disagreement::MissingFromSigner {
                round: 1,
                kind: "report".into(),
                signer: "helper-0".into(),
                held_by: vec!["coordinator".into()],
            }]
        );
    }

    #[test]
    fn a_result_a_helper_never_received_is_not_a_disagreement() {
        let mut logs = honest();
        logs[2].entries.retain(|e| e.kind != "result");
        let s = cross_check(&logs);
        assert_eq!(s.disagreements, Vec::new());
        assert_eq!(s.not_received, 3);
    }

    #[test]
    fn rounds_before_a_log_begins_are_not_held_against_it() {
        let mut logs = honest();
        // helper-0 was reset after round 1: its log starts at round 2.
        logs[1].entries = vec![entry("descriptor", 2, 1, b"d2")];
        logs[0].entries.push(entry("descriptor", 2, 1, b"d2"));
        let s = cross_check(&logs);
        assert_eq!(s.disagreements, Vec::new(), "{:?}", s.disagreements);
    }
}
