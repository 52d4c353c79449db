//! Rotating signing keys and TLS certificates while rounds run (issue #13).
//!
//! First test: a federation of real node processes runs rounds back to back while
//! `sealroom rotate-key` replaces the coordinator's key: every other node
//! reloads federation.toml (SIGHUP), then the coordinator. No round is lost
//! across the switch, rounds after it carry the new key, the old key is
//! retired with `rotate-key --retire`, and a coordinator that goes back to
//! the old key afterwards has its rounds refused by every helper. Every
//! node's audit log verifies with its keys pinned to federation.toml, and
//! the logs agree with each other.
//!
//! Second test: a helper's signing key (`rotate-key`) and a helper's and a
//! client's TLS certificates (`rotate-cert`) rotate under load, then are
//! retired; no round is lost, the helper's artifacts switch keys, a helper
//! put back on its retired key has its round refused, and an admin that
//! presents a retired certificate is refused at the handshake.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::process::Signal;

use crate::common;
use common::{round_json, sealroom, three_by_three, wait_for_port};

/// The two tests each run a federation of 7 processes: one at a time.
static ONE_FEDERATION: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn round(admin: &std::path::Path) -> serde_json::Value {
    round_json(admin, 16)
}

fn run_ok(args: &[&str], config: &std::path::Path) -> String {
    let out = sealroom()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("sealroom runs");
    assert!(
        out.status.success(),
        "sealroom {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The key id that signed round `round`'s descriptor in `node`'s audit log.
fn descriptor_signer(config: &std::path::Path, round: u64) -> String {
    signer_of(config, round, "descriptor")
}

/// The key id that signed round `round`'s first artifact of `kind` in
/// `node`'s audit log.
fn signer_of(config: &std::path::Path, round: u64, kind: &str) -> String {
    let out = run_ok(
        &["audit", "show", "--json", "--round", &round.to_string()],
        config,
    );
    let story: serde_json::Value = serde_json::from_str(out.trim()).expect("audit show --json");
    let entries = story
        .get("entries")
        .and_then(|e| e.as_array())
        .cloned()
        .or_else(|| story.as_array().cloned())
        .expect("entries");
    entries
        .iter()
        .find(|e| e["kind"] == kind)
        .and_then(|e| e["signed_by"].as_str())
        .unwrap_or_else(|| panic!("no {kind} for round {round}: {story}"))
        .to_string()
}

#[test]
fn the_coordinator_key_rotates_under_load_and_the_old_key_is_refused_after() {
    let _one = ONE_FEDERATION.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, base, first) = three_by_three(dir.path());
    let clients = ["client-0", "client-1", "client-2"];
    let admin = dir.path().join("admin.toml");
    let federation = dir.path().join("federation.toml");
    let coordinator = nodes.named("coordinator").config.clone();
    let before_rotation = std::fs::read_to_string(&federation).expect("federation.toml");
    let coordinator_before = std::fs::read_to_string(&coordinator).expect("coordinator.toml");

    // Load: rounds back to back until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let admin = admin.clone();
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) && outcomes.len() < 400 {
                outcomes.push(round(&admin));
            }
            outcomes
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    let said = run_ok(&["rotate-key"], &coordinator);
    assert!(said.contains("key epoch 1"), "{said}");
    let servers_and_clients = ["helper-0", "helper-1", "helper-2"]
        .into_iter()
        .chain(clients);
    for name in servers_and_clients.clone() {
        nodes.named(name).signal(Signal::HUP);
    }
    for name in servers_and_clients.clone() {
        nodes.wait_log(name, "keys reloaded", 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    nodes.named("coordinator").signal(Signal::HUP);
    nodes.wait_log("coordinator", "keys reloaded", 1);
    // Rounds under the new key.
    std::thread::sleep(Duration::from_secs(3));

    let said = run_ok(&["rotate-key", "--retire"], &coordinator);
    assert!(said.contains("retired"), "{said}");
    for name in servers_and_clients.clone() {
        nodes.named(name).signal(Signal::HUP);
        nodes.wait_log(name, "keys reloaded", 2);
    }
    nodes.named("coordinator").signal(Signal::HUP);
    nodes.wait_log("coordinator", "keys reloaded", 2);
    // A helper restarted after the retirement starts (rounds it still holds
    // under the retired key are left out) and takes part again: the rounds
    // after it complete with every helper.
    {
        let helper = nodes
            .0
            .iter_mut()
            .find(|n| n.name == "helper-1")
            .expect("helper-1");
        helper.stop();
        helper.start();
    }
    wait_for_port(base + 2);
    nodes.wait_log("helper-1", "helper state restored", 2);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.join().expect("load thread");

    // No round lost: every round of the load completed with every client.
    assert!(outcomes.len() >= 5, "too few rounds ran: {outcomes:?}");
    for outcome in &outcomes {
        assert_eq!(
            outcome["status"], "completed",
            "a round did not complete across the rotation: {outcome}"
        );
        assert_eq!(
            outcome["included_clients"].as_array().map(Vec::len),
            Some(3),
            "{outcome}"
        );
    }
    let last = outcomes
        .last()
        .and_then(|o| o["round_id"].as_u64())
        .expect("last round");
    eprintln!(
        "{} rounds under load (rounds up to {last}), every one completed",
        outcomes.len()
    );
    // A helper holds the first round under the old key and the last under
    // the new one.
    let helper0 = nodes.named("helper-0").config.clone();
    let old_signer = descriptor_signer(&helper0, first);
    let new_signer = descriptor_signer(&helper0, last);
    assert_ne!(
        old_signer, new_signer,
        "the last round is not signed by a new key"
    );

    // After the retirement the old key is refused: a coordinator put back on
    // it (as if its old key were stolen and used) issues rounds that no
    // helper takes. Only the coordinator reloads; the others keep the
    // retired trust.
    let rotated = std::fs::read_to_string(&federation).expect("federation.toml");
    let new_key_hex = rotated
        .split("[coordinator]")
        .nth(1)
        .and_then(|c| c.lines().find(|l| l.starts_with("signing_key")))
        .and_then(|l| l.split('"').nth(1))
        .expect("new key")
        .to_string();
    let old_key_hex = before_rotation
        .split("[coordinator]")
        .nth(1)
        .and_then(|c| c.lines().find(|l| l.starts_with("signing_key")))
        .and_then(|l| l.split('"').nth(1))
        .expect("old key")
        .to_string();
    let mut table: toml::Table = rotated.parse().expect("toml");
    let entry = table["coordinator"].as_table_mut().expect("coordinator");
    entry.insert("signing_key".into(), old_key_hex.into());
    entry.insert("key_epoch".into(), toml::Value::Integer(2));
    entry.insert("previous_signing_key".into(), new_key_hex.into());
    std::fs::write(&federation, toml::to_string(&table).expect("toml")).expect("write");
    let old_file = coordinator_before
        .lines()
        .find(|l| l.starts_with("signing_key"))
        .and_then(|l| l.split('"').nth(1))
        .expect("old key file")
        .to_string();
    let coordinator_rotated = std::fs::read_to_string(&coordinator).expect("coordinator.toml");
    let mut node_table: toml::Table = coordinator_rotated.parse().expect("toml");
    let new_file = node_table["signing_key"]
        .as_str()
        .expect("new key file")
        .to_string();
    let resolve = |f: &str| {
        let p = std::path::Path::new(f);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.path().join(p)
        }
    };
    node_table.insert(
        "signing_key".into(),
        resolve(&old_file).display().to_string().into(),
    );
    node_table.insert(
        "previous_signing_key".into(),
        resolve(&new_file).display().to_string().into(),
    );
    std::fs::write(&coordinator, toml::to_string(&node_table).expect("toml")).expect("write");
    nodes.named("coordinator").signal(Signal::HUP);
    nodes.wait_log("coordinator", "keys reloaded", 3);
    let refused = round(&admin);
    assert_ne!(
        refused["status"], "completed",
        "a round signed with the retired key was taken: {refused}"
    );
    nodes.wait_log("coordinator", "untrusted key", 1);

    // Put the federation back on the new key for the audit checks, which
    // pin every log's current keys to federation.toml.
    std::fs::write(&federation, &rotated).expect("write");
    std::fs::write(&coordinator, &coordinator_rotated).expect("write");
    for node in &mut nodes.0 {
        node.stop();
    }
    for name in ["coordinator", "helper-0", "helper-1", "helper-2"] {
        let config = nodes.named(name).config.clone();
        let out = sealroom()
            .args(["audit", "verify", "--config"])
            .arg(&config)
            .arg("--federation")
            .arg(&federation)
            .output()
            .expect("audit verify runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if name == "coordinator" {
            // Its log ends on the old key it was put back on: pinning to the
            // new key must name that.
            assert!(!out.status.success(), "coordinator log pinned: {text}");
            assert!(text.contains("pins"), "{text}");
        } else {
            assert!(out.status.success(), "audit verify of {name}: {text}");
        }
    }
    // The coordinator's chain itself verifies (old → new → old, each key
    // entry signed by the key it replaces).
    let out = sealroom()
        .args(["audit", "verify", "--config"])
        .arg(&coordinator)
        .output()
        .expect("audit verify runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cross = sealroom();
    cross.args(["audit", "cross-check"]);
    for name in ["coordinator", "helper-0", "helper-1", "helper-2"] {
        cross.arg("--config").arg(&nodes.named(name).config);
    }
    let out = cross.output().expect("cross-check runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SIGHUP to each of `names`, then a wait until each has logged its next
/// successful reload (`reloads` counts them per node).
fn reload(
    nodes: &common::Nodes,
    reloads: &mut std::collections::HashMap<String, usize>,
    names: &[&str],
) {
    for name in names {
        nodes.named(name).signal(Signal::HUP);
    }
    for name in names {
        let n = reloads.entry((*name).to_string()).or_default();
        *n += 1;
        nodes.wait_log(name, "federation.toml reloaded", *n);
    }
}

#[test]
fn helper_keys_and_certificates_rotate_under_load_and_the_old_ones_are_refused_after() {
    let _one = ONE_FEDERATION.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, base, first) = three_by_three(dir.path());
    let all = [
        "coordinator",
        "helper-0",
        "helper-1",
        "helper-2",
        "client-0",
        "client-1",
        "client-2",
    ];
    let others = |who: &str| {
        all.iter()
            .copied()
            .filter(|n| *n != who)
            .collect::<Vec<_>>()
    };
    let config = |name: &str| dir.path().join(format!("{name}.toml"));
    let admin = config("admin");
    let federation = dir.path().join("federation.toml");
    let mut reloads = std::collections::HashMap::new();

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let admin = admin.clone();
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) && outcomes.len() < 400 {
                outcomes.push(round(&admin));
            }
            outcomes
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    // helper-0's signing key: every other node first, then helper-0.
    let said = run_ok(&["rotate-key"], &config("helper-0"));
    assert!(said.contains("key epoch 1"), "{said}");
    reload(&nodes, &mut reloads, &others("helper-0"));
    reload(&nodes, &mut reloads, &["helper-0"]);
    nodes.wait_log("helper-0", "own_key_switched=true", 1);

    // helper-1's and client-2's certificates, the same way.
    for who in ["helper-1", "client-2"] {
        let said = run_ok(&["rotate-cert"], &config(who));
        assert!(said.contains("new certificate"), "{said}");
        reload(&nodes, &mut reloads, &others(who));
        reload(&nodes, &mut reloads, &[who]);
    }
    std::thread::sleep(Duration::from_secs(3));

    // Retire all three: the old key and certificates are refused from now
    // on, and connections made with the old certificates close (client-2
    // and helper-1 reconnect with their new ones).
    run_ok(&["rotate-key", "--retire"], &config("helper-0"));
    run_ok(&["rotate-cert", "--retire"], &config("helper-1"));
    run_ok(&["rotate-cert", "--retire"], &config("client-2"));
    reload(&nodes, &mut reloads, &all);
    nodes.wait_log("coordinator", "the certificate it connected with", 1);
    // helper-1 restarted on its new certificate rejoins.
    {
        let helper = nodes
            .0
            .iter_mut()
            .find(|n| n.name == "helper-1")
            .expect("helper-1");
        helper.stop();
        helper.start();
    }
    wait_for_port(base + 2);
    nodes.wait_log("helper-1", "helper state restored", 2);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.join().expect("load thread");

    assert!(outcomes.len() >= 5, "too few rounds ran: {outcomes:?}");
    for outcome in &outcomes {
        assert_eq!(
            outcome["status"], "completed",
            "a round did not complete across the rotations: {outcome}"
        );
        assert_eq!(
            outcome["included_clients"].as_array().map(Vec::len),
            Some(3),
            "{outcome}"
        );
    }
    let last = outcomes
        .last()
        .and_then(|o| o["round_id"].as_u64())
        .expect("last round");
    eprintln!(
        "{} rounds under load (rounds up to {last}), every one completed with 3 clients",
        outcomes.len()
    );
    // helper-0 signed the first round's receipts with its old key and the
    // last round's with its new one.
    assert_ne!(
        signer_of(&config("helper-0"), first, "receipt"),
        signer_of(&config("helper-0"), last, "receipt"),
        "helper-0's receipts did not switch keys"
    );

    // An admin's certificate: rotated and retired while the coordinator
    // runs. The new one works; one who still presents the old one (with a
    // stale federation.toml of its own) is refused at the handshake.
    let admin_before = std::fs::read_to_string(&admin).expect("admin.toml");
    run_ok(&["rotate-cert"], &admin);
    reload(&nodes, &mut reloads, &["coordinator"]);
    let with_new = round(&admin);
    assert_eq!(with_new["status"], "completed", "{with_new}");
    let during = std::fs::read_to_string(&federation).expect("federation.toml");
    run_ok(&["rotate-cert", "--retire"], &admin);
    reload(&nodes, &mut reloads, &["coordinator"]);
    let retired = std::fs::read_to_string(&federation).expect("federation.toml");
    let stale_dir = dir.path().join("stale-admin");
    std::fs::create_dir_all(&stale_dir).expect("mkdir");
    std::fs::write(stale_dir.join("federation.toml"), &during).expect("write");
    let stale_admin = stale_dir.join("admin.toml");
    let absolute = |text: &str| {
        let mut table: toml::Table = text.parse().expect("toml");
        let tls = table["tls"].as_table_mut().expect("tls");
        for field in ["ca_cert", "cert", "key"] {
            let p = tls[field].as_str().expect("path").to_string();
            tls.insert(
                field.into(),
                dir.path().join(p).display().to_string().into(),
            );
        }
        table.insert("federation".into(), "federation.toml".into());
        toml::to_string(&table).expect("toml")
    };
    std::fs::write(&stale_admin, absolute(&admin_before)).expect("write");
    let refused = round(&stale_admin);
    assert_ne!(refused["status"], "completed", "{refused}");
    nodes.wait_log("coordinator", "TLS handshake refused", 1);
    let again = round(&admin);
    assert_eq!(again["status"], "completed", "{again}");

    // helper-0 put back on its retired key (as if it had been stolen):
    // every other node keeps refusing it, so its round cannot complete.
    let helper0_rotated = std::fs::read_to_string(config("helper-0")).expect("helper-0.toml");
    let mut table: toml::Table = retired.parse().expect("toml");
    let helper_entry = |t: &mut toml::Table| -> toml::Table {
        t["helpers"].as_array().expect("helpers")[0]
            .as_table()
            .expect("helper-0")
            .clone()
    };
    let entry = helper_entry(&mut table);
    let new_key_hex = entry["signing_key"].as_str().expect("key").to_string();
    let mut node_table: toml::Table = helper0_rotated.parse().expect("toml");
    let old_file = node_table
        .get("previous_signing_key")
        .and_then(toml::Value::as_str)
        .map(str::to_string);
    // rotate-key --retire leaves the node's previous_signing_key file in
    // its config only until the next rotation; fall back to the key the
    // initial federation listed.
    let old_file = old_file.unwrap_or_else(|| {
        dir.path()
            .join("helper-0.signing.key")
            .display()
            .to_string()
    });
    let old_key = sealroom_node::pki::read_signing_key(std::path::Path::new(&old_file))
        .expect("old helper key");
    let old_key_hex = hex::encode(old_key.verifying_key().to_bytes());
    assert_ne!(old_key_hex, new_key_hex);
    {
        let helpers = table["helpers"].as_array_mut().expect("helpers");
        let h0 = helpers[0].as_table_mut().expect("helper-0");
        h0.insert("signing_key".into(), old_key_hex.into());
        h0.insert("key_epoch".into(), toml::Value::Integer(2));
        h0.insert("previous_signing_key".into(), new_key_hex.into());
    }
    std::fs::write(&federation, toml::to_string(&table).expect("toml")).expect("write");
    let new_file = node_table["signing_key"]
        .as_str()
        .expect("file")
        .to_string();
    node_table.insert("signing_key".into(), old_file.into());
    node_table.insert("previous_signing_key".into(), new_file.into());
    std::fs::write(
        config("helper-0"),
        toml::to_string(&node_table).expect("toml"),
    )
    .expect("write");
    nodes.named("helper-0").signal(Signal::HUP);
    nodes.wait_log("helper-0", "own_key_switched=true", 2);
    let refused = round(&admin);
    assert_ne!(
        refused["status"], "completed",
        "a round with helper-0 on its retired key completed: {refused}"
    );
    assert_eq!(refused["reason"], "helper_missing", "{refused}");
    // The coordinator refused its report as signed by a key it does not
    // trust (and told it so).
    nodes.wait_log("helper-0", "envelope is signed by unknown key", 1);

    // Back on the new key for the audit checks (pinned to federation.toml).
    std::fs::write(&federation, &retired).expect("write");
    std::fs::write(config("helper-0"), &helper0_rotated).expect("write");
    for node in &mut nodes.0 {
        node.stop();
    }
    for name in ["coordinator", "helper-0", "helper-1", "helper-2"] {
        let out = sealroom()
            .args(["audit", "verify", "--config"])
            .arg(config(name))
            .arg("--federation")
            .arg(&federation)
            .output()
            .expect("audit verify runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if name == "helper-0" {
            // Its log ends on the old key it was put back on.
            assert!(!out.status.success(), "helper-0 log pinned: {text}");
            assert!(text.contains("pins"), "{text}");
            let chain = sealroom()
                .args(["audit", "verify", "--config"])
                .arg(config(name))
                .output()
                .expect("audit verify runs");
            assert!(
                chain.status.success(),
                "helper-0's chain (old → new → old key): {}{}",
                String::from_utf8_lossy(&chain.stdout),
                String::from_utf8_lossy(&chain.stderr)
            );
        } else {
            assert!(out.status.success(), "audit verify of {name}: {text}");
        }
    }
    let mut cross = sealroom();
    cross.args(["audit", "cross-check"]);
    for name in ["coordinator", "helper-0", "helper-1", "helper-2"] {
        cross.arg("--config").arg(config(name));
    }
    let out = cross.output().expect("cross-check runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
