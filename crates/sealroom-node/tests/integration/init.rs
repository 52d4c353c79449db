//! `sealroom init` and config loading: a generated federation loads, its keys
//! are private, re-running is refused unless forced, and every kind of bad
//! config is refused with an error naming the file and the field.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use sealroom_node::config::{
    self, ConfigError, DataSource, FederationSpec, ModeSpec, Role, load_federation,
    load_node_config,
};
use sealroom_node::init::{InitError, InitOptions, InitSummary, init_federation};
use sealroom_node::pki::{self, CertificateAuthority, PkiError, TlsMaterial, Validity};

fn fresh(opts: &InitOptions) -> (tempfile::TempDir, InitSummary) {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = init_federation(dir.path(), opts).expect("init");
    (dir, summary)
}

fn default_federation() -> (tempfile::TempDir, InitSummary) {
    fresh(&InitOptions::default())
}

fn edit_federation(dir: &Path, edit: impl FnOnce(&mut FederationSpec)) {
    let file = dir.join("federation.toml");
    let mut spec: FederationSpec =
        toml::from_str(&fs::read_to_string(&file).expect("read")).expect("parse");
    edit(&mut spec);
    fs::write(&file, toml::to_string(&spec).expect("encode")).expect("write");
}

fn edit_node(dir: &Path, name: &str, edit: impl FnOnce(&mut toml::Table)) {
    let file = dir.join(format!("{name}.toml"));
    let mut table: toml::Table = fs::read_to_string(&file)
        .expect("read")
        .parse()
        .expect("parse");
    edit(&mut table);
    fs::write(&file, toml::to_string(&table).expect("encode")).expect("write");
}

fn string(s: &str) -> toml::Value {
    toml::Value::String(s.to_string())
}

fn load_err(dir: &Path, name: &str) -> ConfigError {
    match load_node_config(&dir.join(format!("{name}.toml"))) {
        Ok(_) => panic!("{name}.toml loaded although it is bad"),
        Err(e) => e,
    }
}

/// Asserts the error is about `file_name`'s `field`, and returns its text.
#[track_caller]
fn assert_about(err: &ConfigError, file_name: &str, field: &str) -> String {
    let text = err.to_string();
    assert_eq!(
        err.file().file_name().and_then(|f| f.to_str()),
        Some(file_name),
        "{text}"
    );
    assert_eq!(err.field(), Some(field), "{text}");
    assert!(text.contains(file_name), "{text}");
    assert!(text.contains(field), "{text}");
    text
}

#[track_caller]
fn federation_refused(edit: impl FnOnce(&mut FederationSpec), field: &str) -> String {
    let (dir, _) = default_federation();
    edit_federation(dir.path(), edit);
    let direct = load_federation(&dir.path().join("federation.toml")).expect_err("refused");
    assert_about(&direct, "federation.toml", field);
    // A node's config names the federation file at fault, not itself.
    let err = load_err(dir.path(), "coordinator");
    assert_about(&err, "federation.toml", field)
}

#[track_caller]
fn node_refused(name: &str, edit: impl FnOnce(&Path), field: &str) -> (ConfigError, String) {
    let (dir, _) = default_federation();
    edit(dir.path());
    let err = load_err(dir.path(), name);
    let text = assert_about(&err, &format!("{name}.toml"), field);
    (err, text)
}

fn threshold_mode(spec: &mut FederationSpec, t: Option<usize>) {
    spec.mode = ModeSpec::Threshold;
    spec.threshold = t;
    spec.quantization.ring = "fp61".into();
}

// ---------------------------------------------------------------- init

#[test]
fn init_then_every_config_loads() {
    let (_dir, summary) = default_federation();
    assert_eq!(summary.nodes.len(), 1 + 3 + 5 + 1);
    let federation = load_federation(&summary.federation_file).expect("federation loads");
    assert_eq!(federation, summary.federation);
    assert_eq!(federation.mode, ModeSpec::Additive);
    assert_eq!(federation.threshold, None);
    assert_eq!(federation.quantization.ring, "z2_32");
    assert_eq!(federation.min_clients, 3);
    assert_eq!(federation.helpers.len(), 3);
    assert_eq!(federation.clients.len(), 5);
    assert_eq!(federation.admins.len(), 1);
    assert_eq!(
        federation.coordinator.endpoint.as_deref(),
        Some("127.0.0.1:7400")
    );
    assert_eq!(
        federation.helpers[2].endpoint.as_deref(),
        Some("127.0.0.1:7403")
    );

    for node in &summary.nodes {
        let cfg = load_node_config(&node.config).expect("generated config loads");
        assert_eq!(cfg.role, node.role);
        assert_eq!(cfg.name, node.name);
        assert_eq!(cfg.id, node.id);
        assert_eq!(cfg.tls.id(), node.id);
        assert_eq!(cfg.party.fingerprint, node.id.to_hex());
        assert!(cfg.file.is_absolute());
        assert!(cfg.data_dir.is_absolute());
        assert!(cfg.data_dir.ends_with(Path::new("data").join(&node.name)));
        assert!(cfg.tls_files.key.is_absolute());
        assert_eq!(cfg.federation_file, summary.dir.join("federation.toml"));
        let serves = matches!(node.role, Role::Coordinator | Role::Helper);
        assert_eq!(cfg.signing_key.is_some(), serves, "{}", node.name);
        assert_eq!(cfg.listen.is_some(), serves, "{}", node.name);
        assert_eq!(cfg.listen, node.listen);
        if let Some(key) = &cfg.signing_key {
            assert_eq!(
                cfg.party.signing_key.as_deref(),
                Some(hex::encode(key.verifying_key().to_bytes()).as_str())
            );
        }
        match node.role {
            Role::Client => {
                let index: usize = node
                    .name
                    .strip_prefix("client-")
                    .and_then(|i| i.parse().ok())
                    .expect("client-<i>");
                assert_eq!(
                    cfg.data.get("wine"),
                    Some(&DataSource::Builtin {
                        dataset: "winequality".into(),
                        part: index,
                        parts: 5
                    })
                );
                assert_eq!(cfg.data.len(), 1);
            }
            _ => assert!(cfg.data.is_empty()),
        }
    }
    let names: Vec<&str> = summary.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "coordinator",
            "helper-0",
            "helper-1",
            "helper-2",
            "client-0",
            "client-1",
            "client-2",
            "client-3",
            "client-4",
            "admin"
        ]
    );
    for file in &summary.files {
        assert!(file.is_file(), "{}", file.display());
    }
}

#[test]
fn threshold_mode_over_fp61() {
    let (_dir, summary) = fresh(&InitOptions {
        helpers: 5,
        clients: 3,
        threshold: Some(3),
        min_clients: Some(2),
        federation_id: "hospitals".into(),
        base_port: 9000,
        ..InitOptions::default()
    });
    let f = &summary.federation;
    assert_eq!(f.mode, ModeSpec::Threshold);
    assert_eq!(f.threshold, Some(3));
    assert_eq!(f.quantization.ring, "fp61");
    assert_eq!(f.min_clients, 2);
    assert_eq!(f.federation_id, "hospitals");
    assert_eq!(f.helpers[4].endpoint.as_deref(), Some("127.0.0.1:9005"));
    for node in &summary.nodes {
        load_node_config(&node.config).expect("loads");
    }
}

#[test]
fn dns_host_goes_into_endpoints_and_certificates() {
    let (_dir, summary) = fresh(&InitOptions {
        helpers: 2,
        clients: 2,
        host: "node.example".into(),
        ..InitOptions::default()
    });
    assert_eq!(
        summary.federation.helpers[0].endpoint.as_deref(),
        Some("node.example:7401")
    );
    // Loading verifies that each server's certificate covers its endpoint host.
    let helper = load_node_config(&summary.nodes[1].config).expect("loads");
    assert_eq!(helper.listen, Some("0.0.0.0:7401".parse().expect("addr")));
    helper
        .tls
        .verify(Some("node.example"), Path::new("helper-0.pem"))
        .expect("covers its host");
    assert!(
        helper
            .tls
            .verify(Some("elsewhere.example"), Path::new("helper-0.pem"))
            .is_err()
    );
}

#[test]
fn private_keys_are_0600() {
    let (dir, summary) = default_federation();
    let mut keys = 0;
    for file in &summary.files {
        let mode = fs::metadata(file).expect("stat").permissions().mode() & 0o777;
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        if name.ends_with(".key") {
            keys += 1;
            assert_eq!(mode, 0o600, "{name}");
        } else {
            assert_eq!(mode & 0o022, 0, "{name} is writable by others");
        }
    }
    // ca.key, 10 TLS keys, 4 signing keys.
    assert_eq!(keys, 1 + 10 + 4);
    let signing = fs::read_to_string(dir.path().join("helper-0.signing.key")).expect("read");
    assert_eq!(signing.trim().len(), 64);
    assert!(signing.trim().bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn rerun_refuses_without_force_and_regenerates_with_force() {
    let (dir, first) = default_federation();
    match init_federation(dir.path(), &InitOptions::default()) {
        Err(e @ InitError::Exists { .. }) => {
            let text = e.to_string();
            assert!(text.contains("--force"), "{text}");
        }
        other => panic!("expected Exists, got {other:?}"),
    }
    // Nothing was touched by the refused run.
    let after_refusal = load_node_config(&first.nodes[0].config).expect("loads");
    assert_eq!(after_refusal.id, first.nodes[0].id);

    // A loosened key is tightened again by the forced run.
    let key = dir.path().join("helper-0.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    let second = init_federation(
        dir.path(),
        &InitOptions {
            force: true,
            ..InitOptions::default()
        },
    )
    .expect("forced init");
    assert_eq!(
        fs::metadata(&key).expect("stat").permissions().mode() & 0o777,
        0o600
    );
    assert!(second.leftovers.is_empty(), "{:?}", second.leftovers);
    for (a, b) in first.nodes.iter().zip(&second.nodes) {
        assert_eq!(a.name, b.name);
        assert_ne!(a.id, b.id, "{} kept its certificate", a.name);
        load_node_config(&b.config).expect("regenerated config loads");
    }
}

#[test]
fn forced_smaller_federation_reports_leftovers() {
    let (dir, _) = default_federation();
    let smaller = init_federation(
        dir.path(),
        &InitOptions {
            clients: 3,
            force: true,
            ..InitOptions::default()
        },
    )
    .expect("forced init");
    let names: Vec<String> = smaller
        .leftovers
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(String::from))
        .collect();
    assert_eq!(
        names,
        [
            "client-3.key",
            "client-3.pem",
            "client-3.toml",
            "client-4.key",
            "client-4.pem",
            "client-4.toml"
        ]
    );
    // The leftover config no longer loads: its node is not in the federation.
    let err = load_err(dir.path(), "client-4");
    assert_about(&err, "client-4.toml", "name");
}

#[test]
fn a_single_existing_key_is_enough_to_refuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("client-3.key"), "old").expect("write");
    match init_federation(dir.path(), &InitOptions::default()) {
        Err(InitError::Exists { existing, .. }) => {
            assert!(existing.ends_with("client-3.key"));
        }
        other => panic!("expected Exists, got {other:?}"),
    }
    assert!(!dir.path().join("ca.key").exists());
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = init_federation(
        dir.path(),
        &InitOptions {
            threshold: Some(4),
            ..InitOptions::default()
        },
    )
    .expect_err("threshold above helpers");
    assert_eq!(
        err.to_string(),
        "threshold: 4 exceeds the number of helpers (3)"
    );
    assert!(fs::read_dir(dir.path()).expect("ls").next().is_none());
}

// ------------------------------------------------- federation.toml refusals

#[test]
fn unknown_field_in_federation() {
    let (dir, _) = default_federation();
    let file = dir.path().join("federation.toml");
    let text = fs::read_to_string(&file).expect("read");
    fs::write(&file, format!("tresholds = 2\n{text}")).expect("write");
    let err = load_federation(&file).expect_err("unknown field");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert_about(&err, "federation.toml", "tresholds");
}

#[test]
fn threshold_above_helpers() {
    let text = federation_refused(|s| threshold_mode(s, Some(4)), "threshold");
    assert!(
        text.ends_with("federation.toml: field `threshold`: 4 exceeds the number of helpers (3)"),
        "{text}"
    );
}

#[test]
fn threshold_below_two() {
    federation_refused(|s| threshold_mode(s, Some(1)), "threshold");
}

#[test]
fn threshold_missing_in_threshold_mode() {
    federation_refused(|s| threshold_mode(s, None), "threshold");
}

#[test]
fn additive_threshold_must_equal_helpers() {
    let text = federation_refused(|s| s.threshold = Some(2), "threshold");
    assert!(text.contains("additive"), "{text}");
    // Equal to the helper count is accepted.
    let (dir, _) = default_federation();
    edit_federation(dir.path(), |s| s.threshold = Some(3));
    load_node_config(&dir.path().join("helper-1.toml")).expect("t = h is fine");
}

#[test]
fn too_few_helpers() {
    federation_refused(|s| s.helpers.truncate(1), "helpers");
}

#[test]
fn min_clients_out_of_range() {
    federation_refused(|s| s.min_clients = 1, "min_clients");
    let text = federation_refused(|s| s.min_clients = 6, "min_clients");
    assert!(
        text.contains("6 exceeds the number of clients (5)"),
        "{text}"
    );
}

#[test]
fn unknown_ring() {
    federation_refused(
        |s| s.quantization.ring = "z2_128".into(),
        "quantization.ring",
    );
}

#[test]
fn threshold_mode_requires_fp61() {
    let text = federation_refused(
        |s| {
            threshold_mode(s, Some(2));
            s.quantization.ring = "z2_64".into();
        },
        "quantization.ring",
    );
    assert!(text.contains("fp61"), "{text}");
}

#[test]
fn invalid_quantization() {
    federation_refused(|s| s.quantization.bits = 60, "quantization.bits");
    federation_refused(|s| s.quantization.clip = -1.0, "quantization.clip");
    federation_refused(|s| s.quantization.clip = f64::INFINITY, "quantization.clip");
    federation_refused(
        |s| s.quantization.scale_bits = 61,
        "quantization.scale_bits",
    );
}

#[test]
fn quantization_that_could_overflow_for_this_many_clients() {
    // 5 clients × 8000·2^16 ≈ 2.6e9 > 2^31 − 1: fine for one client, not for five.
    let text = federation_refused(
        |s| {
            s.quantization.ring = "z2_32".into();
            s.quantization.scale_bits = 16;
            s.quantization.clip = 8000.0;
            s.quantization.bits = 30;
        },
        "quantization.bits",
    );
    assert!(text.contains("z2_32"), "{text}");
}

#[test]
fn duplicate_names_and_fingerprints() {
    federation_refused(|s| s.clients[1].name = "client-0".into(), "clients[1].name");
    federation_refused(
        |s| s.admins[0].name = "coordinator".into(),
        "admins[0].name",
    );
    let text = federation_refused(
        |s| s.clients[3].fingerprint = s.helpers[1].fingerprint.clone(),
        "clients[3].fingerprint",
    );
    assert!(text.contains("helpers[1]"), "{text}");
    federation_refused(
        |s| s.helpers[2].signing_key = s.coordinator.signing_key.clone(),
        "helpers[2].signing_key",
    );
}

#[test]
fn bad_hex() {
    federation_refused(
        |s| s.helpers[0].fingerprint = "zz".repeat(32),
        "helpers[0].fingerprint",
    );
    federation_refused(
        |s| s.clients[0].fingerprint.truncate(62),
        "clients[0].fingerprint",
    );
    federation_refused(
        |s| s.helpers[1].signing_key = Some("not hex".into()),
        "helpers[1].signing_key",
    );
}

#[test]
fn coordinator_and_helpers_need_endpoint_and_signing_key() {
    federation_refused(|s| s.coordinator.endpoint = None, "coordinator.endpoint");
    federation_refused(
        |s| s.helpers[2].signing_key = None,
        "helpers[2].signing_key",
    );
    federation_refused(
        |s| s.helpers[0].endpoint = Some("no-port".into()),
        "helpers[0].endpoint",
    );
}

#[test]
fn unsupported_protocol_version() {
    federation_refused(|s| s.protocol_version = 99, "protocol_version");
}

// ------------------------------------------------------ node config refusals

#[test]
fn unknown_field_in_node_config() {
    let (err, _) = node_refused(
        "client-2",
        |dir| {
            edit_node(dir, "client-2", |t| {
                drop(t.insert("colour".into(), string("red")))
            })
        },
        "colour",
    );
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
}

#[test]
fn name_not_in_federation() {
    let (_, text) = node_refused(
        "helper-0",
        |dir| {
            edit_node(dir, "helper-0", |t| {
                drop(t.insert("name".into(), string("helper-9")))
            })
        },
        "name",
    );
    assert!(text.contains("helper-9"), "{text}");
    // Listed, but under another role.
    let (_, text) = node_refused(
        "helper-0",
        |dir| {
            edit_node(dir, "helper-0", |t| {
                drop(t.insert("role".into(), string("client")))
            })
        },
        "name",
    );
    assert!(text.contains("listed as a helper"), "{text}");
}

#[test]
fn server_roles_need_listen_and_signing_key() {
    node_refused(
        "helper-1",
        |dir| edit_node(dir, "helper-1", |t| drop(t.remove("listen"))),
        "listen",
    );
    node_refused(
        "coordinator",
        |dir| edit_node(dir, "coordinator", |t| drop(t.remove("signing_key"))),
        "signing_key",
    );
    node_refused(
        "client-0",
        |dir| {
            edit_node(dir, "client-0", |t| {
                drop(t.insert("listen".into(), string("127.0.0.1:7999")))
            })
        },
        "listen",
    );
}

#[test]
fn missing_key_and_certificate_files() {
    for (file, field) in [
        ("helper-0.key", "tls.key"),
        ("helper-0.pem", "tls.cert"),
        ("ca.pem", "tls.ca_cert"),
        ("helper-0.signing.key", "signing_key"),
    ] {
        let (err, text) = node_refused(
            "helper-0",
            |dir| fs::remove_file(dir.join(file)).expect("rm"),
            field,
        );
        assert!(
            matches!(
                err,
                ConfigError::File {
                    source: PkiError::Read { .. },
                    ..
                }
            ),
            "{text}"
        );
        assert!(text.contains(file), "{text}");
    }
}

#[test]
fn malformed_key_files() {
    node_refused(
        "helper-2",
        |dir| fs::write(dir.join("helper-2.signing.key"), "xyz\n").expect("write"),
        "signing_key",
    );
    node_refused(
        "helper-2",
        |dir| fs::write(dir.join("helper-2.key"), "not pem").expect("write"),
        "tls.key",
    );
    node_refused(
        "helper-2",
        |dir| fs::write(dir.join("helper-2.pem"), "not pem").expect("write"),
        "tls.cert",
    );
}

#[test]
fn someone_elses_keys_and_certificates() {
    // Another helper's signing key: valid, but not the one federation.toml lists.
    let (_, text) = node_refused(
        "helper-0",
        |dir| {
            edit_node(dir, "helper-0", |t| {
                drop(t.insert("signing_key".into(), string("helper-1.signing.key")))
            })
        },
        "signing_key",
    );
    assert!(text.contains("does not hold the key"), "{text}");
    // Another node's certificate and key: a valid pair, but not this identity.
    let (_, text) = node_refused(
        "client-0",
        |dir| {
            edit_node(dir, "client-0", |t| {
                let tls = t
                    .get_mut("tls")
                    .and_then(|v| v.as_table_mut())
                    .expect("tls");
                tls.insert("cert".into(), string("client-1.pem"));
                tls.insert("key".into(), string("client-1.key"));
            })
        },
        "tls.cert",
    );
    assert!(text.contains("fingerprint"), "{text}");
    // This node's certificate with another node's key.
    let (err, _) = node_refused(
        "client-0",
        |dir| {
            edit_node(dir, "client-0", |t| {
                let tls = t
                    .get_mut("tls")
                    .and_then(|v| v.as_table_mut())
                    .expect("tls");
                tls.insert("key".into(), string("client-1.key"));
            })
        },
        "tls.key",
    );
    assert!(matches!(
        err,
        ConfigError::File {
            source: PkiError::KeyMismatch { .. },
            ..
        }
    ));
}

/// Replaces `name`'s certificate and key, and its fingerprint in
/// federation.toml, so that only the certificate's own validity is at fault.
fn replace_certificate(dir: &Path, name: &str, cert: &pki::IssuedCert) {
    fs::write(dir.join(format!("{name}.pem")), &cert.cert_pem).expect("write cert");
    pki::write_private_file(
        &dir.join(format!("{name}.key")),
        cert.key_pem.as_bytes(),
        true,
    )
    .expect("write key");
    let fingerprint = cert.fingerprint().to_hex();
    edit_federation(dir, |s| {
        for p in std::iter::once(&mut s.coordinator)
            .chain(&mut s.helpers)
            .chain(&mut s.clients)
        {
            if p.name == name {
                p.fingerprint = fingerprint.clone();
            }
        }
    });
}

#[test]
fn expired_certificate_is_refused() {
    let (err, text) = node_refused(
        "client-1",
        |dir| {
            let ca = CertificateAuthority::load(
                "sealroom-local",
                &dir.join("ca.pem"),
                &dir.join("ca.key"),
            )
            .expect("reload the CA");
            let expired = ca
                .issue_leaf("client-1", &[], Validity::expired())
                .expect("issue");
            replace_certificate(dir, "client-1", &expired);
        },
        "tls.cert",
    );
    assert!(
        matches!(
            err,
            ConfigError::File {
                source: PkiError::CertificateRefused { .. },
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("expired"), "{text}");
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let (err, text) = node_refused(
        "helper-1",
        |dir| {
            let foreign =
                CertificateAuthority::generate("sealroom-local", Validity::days(30).expect("days"))
                    .expect("foreign CA");
            let leaf = foreign
                .issue_leaf(
                    "helper-1",
                    &["127.0.0.1"],
                    Validity::days(30).expect("days"),
                )
                .expect("issue");
            replace_certificate(dir, "helper-1", &leaf);
        },
        "tls.cert",
    );
    assert!(
        matches!(
            err,
            ConfigError::File {
                source: PkiError::CertificateRefused { .. },
                ..
            }
        ),
        "{text}"
    );
}

#[test]
fn server_certificate_must_cover_its_endpoint() {
    let (dir, _) = default_federation();
    edit_federation(dir.path(), |s| {
        s.helpers[0].endpoint = Some("helper0.example:7401".into());
    });
    let err = load_err(dir.path(), "helper-0");
    let text = assert_about(&err, "helper-0.toml", "tls.cert");
    assert!(text.contains("certificate refused"), "{text}");
}

#[test]
fn client_data_source() {
    node_refused(
        "client-0",
        |dir| edit_node(dir, "client-0", |t| drop(t.remove("data"))),
        "data",
    );
    node_refused(
        "client-0",
        |dir| {
            edit_node(dir, "client-0", |t| {
                let data = t
                    .get_mut("data")
                    .and_then(|v| v.as_table_mut())
                    .and_then(|d| d.get_mut("wine"))
                    .and_then(|v| v.as_table_mut())
                    .expect("data.wine");
                data.insert("part".into(), toml::Value::Integer(5));
            })
        },
        "data.wine.part",
    );
    node_refused(
        "client-0",
        |dir| {
            edit_node(dir, "client-0", |t| {
                let data = t
                    .get_mut("data")
                    .and_then(|v| v.as_table_mut())
                    .and_then(|d| d.get_mut("wine"))
                    .and_then(|v| v.as_table_mut())
                    .expect("data.wine");
                data.insert("dataset".into(), string("mnist"));
            })
        },
        "data.wine.dataset",
    );
    node_refused(
        "helper-0",
        |dir| {
            edit_node(dir, "helper-0", |t| {
                let mut data = toml::Table::new();
                data.insert("kind".into(), string("csv"));
                data.insert("path".into(), string("rows.csv"));
                let mut tables = toml::Table::new();
                tables.insert("rows".into(), toml::Value::Table(data));
                t.insert("data".into(), toml::Value::Table(tables));
            })
        },
        "data",
    );
}

#[test]
fn client_query_floor() {
    let policy = |min_rows: i64| {
        move |t: &mut toml::Table| {
            let mut p = toml::Table::new();
            p.insert("min_rows".into(), toml::Value::Integer(min_rows));
            t.insert("policy".into(), toml::Value::Table(p));
        }
    };
    node_refused(
        "client-0",
        |dir| edit_node(dir, "client-0", policy(0)),
        "policy.min_rows",
    );
    node_refused(
        "helper-0",
        |dir| edit_node(dir, "helper-0", policy(10)),
        "policy",
    );
    let (dir, _) = default_federation();
    edit_node(dir.path(), "client-1", policy(10));
    let cfg = load_node_config(&dir.path().join("client-1.toml")).expect("loads");
    assert_eq!(cfg.policy.map(|p| p.min_rows), Some(10));
    let cfg = load_node_config(&dir.path().join("client-2.toml")).expect("loads");
    assert_eq!(cfg.policy, None);
}

#[test]
fn csv_data_path_is_resolved_next_to_the_config() {
    let (dir, summary) = default_federation();
    fs::write(dir.path().join("rows.csv"), "a,b\n1,2\n").expect("write");
    fs::write(dir.path().join("rows.db"), b"").expect("write");
    edit_node(dir.path(), "client-4", |t| {
        let tables = t
            .get_mut("data")
            .and_then(|v| v.as_table_mut())
            .expect("data");
        let mut data = toml::Table::new();
        data.insert("kind".into(), string("csv"));
        data.insert("path".into(), string("rows.csv"));
        tables.insert("rows".into(), toml::Value::Table(data));
        let mut data = toml::Table::new();
        data.insert("kind".into(), string("sqlite"));
        data.insert("path".into(), string("rows.db"));
        data.insert("table".into(), string("people"));
        tables.insert("people".into(), toml::Value::Table(data));
        let mut data = toml::Table::new();
        data.insert("kind".into(), string("postgres"));
        data.insert("url".into(), string("postgres://u:secret@localhost/db"));
        data.insert("table".into(), string("payroll"));
        tables.insert("payroll".into(), toml::Value::Table(data));
    });
    let cfg = load_node_config(&dir.path().join("client-4.toml")).expect("loads");
    assert_eq!(
        cfg.data.get("rows"),
        Some(&DataSource::Csv {
            path: summary.dir.join("rows.csv")
        })
    );
    assert_eq!(
        cfg.data.get("people"),
        Some(&DataSource::Sqlite {
            path: summary.dir.join("rows.db"),
            table: "people".into()
        })
    );
    assert_eq!(cfg.data.len(), 4, "wine, rows, people, payroll");
    // The PostgreSQL URL may hold a password: Debug never shows it.
    assert!(!format!("{:?}", cfg.data).contains("secret"));
    fs::remove_file(dir.path().join("rows.csv")).expect("rm");
    let err = load_err(dir.path(), "client-4");
    assert_about(&err, "client-4.toml", "data.rows.path");
}

#[test]
fn relative_config_path_resolves_against_its_directory() {
    let (dir, _) = default_federation();
    let cwd = std::env::current_dir().expect("cwd");
    let relative: PathBuf = pathdiff(dir.path(), &cwd).join("helper-2.toml");
    let cfg = load_node_config(&relative).expect("loads");
    assert!(cfg.tls_files.cert.is_absolute());
    let canonical = fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(cfg.tls_files.cert, canonical.join("helper-2.pem"));
}

/// `target` relative to `base` (both absolute), with `..` as needed.
fn pathdiff(target: &Path, base: &Path) -> PathBuf {
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

// ----------------------------------------------------------- PKI and TLS

#[test]
fn ca_reloads_only_with_its_own_key_and_name() {
    let (dir, _) = default_federation();
    let (ca_pem, ca_key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    let ca = CertificateAuthority::load("sealroom-local", &ca_pem, &ca_key).expect("reload");
    let leaf = ca
        .issue_leaf("client-9", &[], Validity::days(1).expect("days"))
        .expect("issue");
    let material = TlsMaterial::from_pem(
        ca.cert_pem().as_bytes(),
        leaf.cert_pem.as_bytes(),
        leaf.key_pem.as_bytes(),
    )
    .expect("parse");
    material
        .verify(None, Path::new("client-9.pem"))
        .expect("the reloaded CA issues valid certificates");

    assert!(CertificateAuthority::load("another-federation", &ca_pem, &ca_key).is_err());
    assert!(
        CertificateAuthority::load("sealroom-local", &ca_pem, &dir.path().join("helper-0.key"))
            .is_err()
    );
}

#[test]
fn fingerprint_is_sha256_of_the_der() {
    let (_dir, summary) = default_federation();
    let cfg = load_node_config(&summary.nodes[0].config).expect("loads");
    let der = cfg.tls.cert_der();
    assert_eq!(pki::fingerprint(der), cfg.id);
    use sha2::Digest as _;
    assert_eq!(
        pki::fingerprint(der).0,
        <[u8; 32]>::from(sha2::Sha256::digest(der))
    );
}

#[test]
fn tonic_tls_configs_build() {
    let _ = pki::install_tls13_provider();
    let (_dir, summary) = default_federation();
    let coordinator = load_node_config(&summary.nodes[0].config).expect("loads");
    let client = load_node_config(&summary.nodes[4].config).expect("loads");

    tonic::transport::Server::builder()
        .tls_config(pki::server_tls(&coordinator.tls))
        .expect("server TLS config builds");
    let host = coordinator.party.endpoint_host().expect("endpoint host");
    assert_eq!(host, "127.0.0.1");
    let endpoint = format!(
        "https://{}",
        coordinator.party.endpoint.as_deref().expect("endpoint")
    );
    tonic::transport::Endpoint::from_shared(endpoint)
        .expect("uri")
        .tls_config(pki::client_tls(&client.tls, host))
        .expect("client TLS config builds");
    let _ = config::split_endpoint("[::1]:1").expect("v6");
}

#[test]
fn threshold_must_be_a_majority_of_helpers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = InitOptions {
        helpers: 4,
        threshold: Some(2),
        ..InitOptions::default()
    };
    let err =
        sealroom_node::init::init_federation(dir.path(), &options).expect_err("2 of 4 is refused");
    assert!(err.to_string().contains("majority"), "{err}");
}

#[test]
fn rotated_certificates_are_checked() {
    // A certificate that is another party's, one that repeats the party's
    // own identity, a replaced one equal to the one presented, a replaced
    // one without the one presented, malformed hex: each refused, naming
    // the field.
    let text = federation_refused(
        |s| s.helpers[1].certificate = Some(s.helpers[0].fingerprint.clone()),
        "helpers[1].certificate",
    );
    assert!(
        text.contains("also the certificate of helpers[0]"),
        "{text}"
    );
    let text = federation_refused(
        |s| s.helpers[0].certificate = Some(s.helpers[0].fingerprint.clone()),
        "helpers[0].certificate",
    );
    assert!(text.contains("own fingerprint"), "{text}");
    federation_refused(
        |s| {
            s.clients[0].certificate = Some("ab".repeat(32));
            s.clients[0].previous_certificate = Some("ab".repeat(32));
        },
        "clients[0].previous_certificate",
    );
    federation_refused(
        |s| s.clients[0].previous_certificate = Some("cd".repeat(32)),
        "clients[0].previous_certificate",
    );
    federation_refused(
        |s| s.coordinator.certificate = Some("xyz".into()),
        "coordinator.certificate",
    );
    // A node that presents a certificate its entry does not list is refused
    // (its identity is no longer enough once `certificate` names another).
    let (dir, _) = default_federation();
    edit_federation(dir.path(), |s| {
        s.helpers[0].certificate = Some("ef".repeat(32));
    });
    let err = load_err(dir.path(), "helper-0");
    let text = assert_about(&err, "helper-0.toml", "tls.cert");
    assert!(text.contains(&"ef".repeat(32)), "{text}");
    // Listed as the replaced certificate, its own is still accepted (the
    // window between a rotation and the node's switch).
    edit_federation(dir.path(), |s| {
        s.helpers[0].previous_certificate = Some(s.helpers[0].fingerprint.clone());
    });
    load_node_config(&dir.path().join("helper-0.toml")).expect("the replaced certificate loads");
}

#[test]
fn helpers_may_rotate_signing_keys_but_clients_have_none() {
    let (dir, _) = default_federation();
    let spare = sealroom_node::pki::generate_signing_key();
    let spare_hex = hex::encode(spare.verifying_key().to_bytes());
    edit_federation(dir.path(), |s| {
        s.helpers[1].previous_signing_key = Some(spare_hex.clone());
        s.helpers[1].key_epoch = 1;
    });
    load_federation(&dir.path().join("federation.toml")).expect("a helper's rotation loads");
    federation_refused(|s| s.clients[0].key_epoch = 1, "clients[0].key_epoch");
    federation_refused(
        |s| s.admins[0].previous_signing_key = Some(hex::encode([7u8; 32])),
        "admins[0].previous_signing_key",
    );
}

// ------------------------------------------------- differential privacy

/// Appends `text` to `DIR/NAME.toml`.
fn append(dir: &Path, name: &str, text: &str) {
    let file = dir.join(name);
    let before = fs::read_to_string(&file).expect("read");
    fs::write(&file, format!("{before}\n{text}\n")).expect("write");
}

#[test]
fn client_privacy_budgets_are_checked_when_loading() {
    let (dir, _) = default_federation();
    let cfg = load_node_config(&dir.path().join("client-0.toml")).expect("loads");
    assert!(cfg.privacy_budget.is_empty(), "no budget by default");

    append(
        dir.path(),
        "client-0.toml",
        "[privacy_budget.wine]\nepsilon = 2.5\ndelta = 1e-6",
    );
    let cfg = load_node_config(&dir.path().join("client-0.toml")).expect("loads");
    assert_eq!(
        cfg.privacy_budget.get("wine"),
        Some(&config::TableBudget {
            epsilon: 2.5,
            delta: 1e-6
        })
    );

    for (budget, field) in [
        (
            "[privacy_budget.wine]\nepsilon = 0.0\ndelta = 0.0",
            "privacy_budget.wine.epsilon",
        ),
        (
            "[privacy_budget.wine]\nepsilon = -1.0\ndelta = 0.0",
            "privacy_budget.wine.epsilon",
        ),
        (
            "[privacy_budget.wine]\nepsilon = nan\ndelta = 0.0",
            "privacy_budget.wine.epsilon",
        ),
        (
            "[privacy_budget.wine]\nepsilon = inf\ndelta = 0.0",
            "privacy_budget.wine.epsilon",
        ),
        (
            "[privacy_budget.wine]\nepsilon = 1.0\ndelta = 1.0",
            "privacy_budget.wine.delta",
        ),
        (
            "[privacy_budget.wine]\nepsilon = 1.0\ndelta = -1e-9",
            "privacy_budget.wine.delta",
        ),
        (
            "[privacy_budget.patients]\nepsilon = 1.0\ndelta = 0.0",
            "privacy_budget.patients",
        ),
    ] {
        let (_, text) = node_refused(
            "client-1",
            |dir| append(dir, "client-1.toml", budget),
            field,
        );
        if field == "privacy_budget.patients" {
            assert!(text.contains("[data.patients]"), "{text}");
        }
    }
    node_refused(
        "helper-0",
        |dir| {
            append(
                dir,
                "helper-0.toml",
                "[privacy_budget.wine]\nepsilon = 1.0\ndelta = 0.0",
            )
        },
        "privacy_budget",
    );
    // An unknown key inside a budget is a syntax error naming it.
    let (dir, _) = default_federation();
    append(
        dir.path(),
        "client-2.toml",
        "[privacy_budget.wine]\nepsilon = 1.0\ndelta = 0.0\nepsilom = 2.0",
    );
    let err = load_err(dir.path(), "client-2");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("epsilom"), "{err}");
}

#[test]
fn federation_privacy_section_is_optional_and_strict() {
    let (dir, _) = default_federation();
    let file = dir.path().join("federation.toml");
    assert!(!load_federation(&file).expect("loads").privacy.require_dp);
    assert!(
        !fs::read_to_string(&file)
            .expect("read")
            .contains("[privacy]"),
        "init writes no [privacy] section"
    );

    append(
        dir.path(),
        "federation.toml",
        "[privacy]\nrequire_dp = true",
    );
    let spec = load_federation(&file).expect("loads");
    assert!(spec.privacy.require_dp);
    let cfg = load_node_config(&dir.path().join("client-0.toml")).expect("loads");
    assert!(cfg.federation.privacy.require_dp);
    // It survives a round trip through the serializer.
    edit_federation(dir.path(), |_| {});
    assert!(load_federation(&file).expect("loads").privacy.require_dp);

    let (dir, _) = default_federation();
    let file = dir.path().join("federation.toml");
    append(
        dir.path(),
        "federation.toml",
        "[privacy]\nrequire_pd = true",
    );
    let err = load_federation(&file).expect_err("unknown key");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("require_pd"), "{err}");
}
