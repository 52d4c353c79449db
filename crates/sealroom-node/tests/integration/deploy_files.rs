//! The deployment files under `deploy/` must match the code they watch.
//!
//! - Every `sealroom_*` metric that `deploy/prometheus/alerts.yml` or
//!   `deploy/grafana/sealroom-dashboard.json` refers to is one that
//!   [`Metrics::new`] registers (see [`exposed_metrics`] for how that set is
//!   found).
//! - Every dashboard panel has a title and at least one query.
//! - Every alert has `expr`, `for`, a `severity` label and a `runbook_url`
//!   whose anchor is a heading of `docs/runbook.md`.
//!
//! The YAML is checked line by line, without a YAML parser: `promtool check
//! rules` (run by `.ci/run`) checks the syntax and the PromQL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sealroom_node::metrics::Metrics;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `sealroom_[a-z0-9_]+` word in `text`, with a histogram's `_bucket`,
/// `_sum` or `_count` suffix removed.
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut start = 0;
    while let Some(offset) = text[start..].find("sealroom_") {
        let begin = start + offset;
        // Only whole words: not the tail of a longer identifier.
        let preceded_by_word = begin > 0 && is_name_byte(bytes[begin - 1]);
        let mut end = begin + "sealroom_".len();
        while end < bytes.len() && is_name_byte(bytes[end]) {
            end += 1;
        }
        if !preceded_by_word && end > begin + "sealroom_".len() {
            let name = &text[begin..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            names.insert(base.to_string());
        }
        start = end;
    }
    names
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// The sample names a node exposes: a counter `x` is sampled as `x_total`; a
/// histogram `x` as `x_bucket`, `x_sum` and `x_count` (the base name is listed,
/// as [`referenced_metrics`] strips those suffixes); a gauge as itself.
///
/// prometheus-client writes a metric family's `# TYPE` line only once the
/// family holds a label set, so a fresh [`Metrics::new`] shows only its plain
/// (unlabelled) metrics. The labelled ones are found where they are
/// registered, in `metrics.rs`: every `register("name", …, field.clone())`
/// with the field's type from the `Metrics` struct. The names that the
/// exposition does show must all be found there too, which keeps that reading
/// of the source honest.
fn exposed_metrics() -> BTreeSet<String> {
    let text = Metrics::new().render();
    let mut from_exposition = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            panic!("malformed TYPE line in the exposition: {line:?}");
        };
        from_exposition.insert(sample_name(name, kind));
    }
    let registered = registered_in_source();
    let unseen: Vec<&String> = from_exposition.difference(&registered).collect();
    assert!(
        unseen.is_empty(),
        "the exposition shows {unseen:?}, which reading metrics.rs did not find \
         (found {registered:?}); the reader in this test needs updating"
    );
    for known in [
        "sealroom_rounds_total",
        "sealroom_round_duration_seconds",
        "sealroom_uploads_total",
        "sealroom_helper_answer_latency_seconds",
    ] {
        assert!(
            registered.contains(known),
            "reading metrics.rs did not find {known}; found {registered:?}"
        );
    }
    registered
}

fn sample_name(name: &str, kind: &str) -> String {
    match kind {
        "counter" => format!("{}_total", name.trim_end_matches("_total")),
        _ => name.to_string(),
    }
}

/// The metrics that `crates/sealroom-node/src/metrics.rs` registers, as
/// sample names (see [`exposed_metrics`]).
fn registered_in_source() -> BTreeSet<String> {
    let source = read("crates/sealroom-node/src/metrics.rs");
    let prefix = source
        .split_once("with_prefix(\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("sealroom", |(prefix, _)| prefix);
    let mut names = BTreeSet::new();
    for (i, _) in source.match_indices(".register") {
        let call = &source[i..];
        let Some(args) = call
            .strip_prefix(".register(")
            .or_else(|| call.strip_prefix(".register_with_unit("))
        else {
            continue;
        };
        let args = &args[..args.find(");").unwrap_or(args.len())];
        let Some(name) = args.split('"').nth(1) else {
            continue;
        };
        let unit = [
            "Seconds", "Bytes", "Ratios", "Joules", "Grams", "Meters", "Volts",
        ]
        .iter()
        .find(|u| args.contains(&format!("Unit::{u}")))
        .map(|u| format!("_{}", u.to_lowercase()))
        .unwrap_or_default();
        let full = format!("{prefix}_{name}{unit}");
        match metric_kind(&source, args) {
            Some(kind) => {
                names.insert(sample_name(&full, kind));
            }
            None => {
                // The type is not readable here: accept either spelling.
                names.insert(full.clone());
                names.insert(format!("{full}_total"));
            }
        }
    }
    names
}

/// `counter`, `gauge` or `histogram`, from the type of the field that a
/// `register(…, m.field.clone())` call passes.
fn metric_kind(source: &str, args: &str) -> Option<&'static str> {
    let before_clone = &args[..args.rfind(".clone()")?];
    let field = before_clone
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()?;
    let declaration = source
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix(&format!("{field}:")))?;
    if declaration.contains("Histogram") {
        Some("histogram")
    } else if declaration.contains("Counter") {
        Some("counter")
    } else if declaration.contains("Gauge") {
        Some("gauge")
    } else {
        None
    }
}

#[test]
fn every_metric_in_the_rules_and_the_dashboard_is_exposed() {
    let exposed = exposed_metrics();
    let mut missing = Vec::new();
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/sealroom-dashboard.json",
    ] {
        let referenced = referenced_metrics(&read(file));
        assert!(
            !referenced.is_empty(),
            "{file} refers to no sealroom metric"
        );
        for name in referenced {
            if !exposed.contains(&name) {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics referenced but not exposed by sealroom_node::metrics::Metrics:\n  {}\nexposed: {exposed:?}",
        missing.join("\n  ")
    );
}

#[test]
fn metric_names_are_found_as_whole_words_without_histogram_suffixes() {
    let found = referenced_metrics(
        "histogram_quantile(0.9, rate(sealroom_round_bytes_bucket[5m])) \
         / sealroom_x_sum + sealroom_rounds_total{reason=\"a\"} notsealroom_y sealroom_",
    );
    let expected: BTreeSet<String> = [
        "sealroom_round_bytes",
        "sealroom_x",
        "sealroom_rounds_total",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn every_dashboard_panel_has_a_title_and_a_query() {
    let text = read("deploy/grafana/sealroom-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let schema = dashboard["schemaVersion"]
        .as_u64()
        .expect("schemaVersion is a number");
    assert!(schema >= 39, "schemaVersion {schema} < 39");
    assert!(
        dashboard["title"].as_str().is_some_and(|t| !t.is_empty()),
        "the dashboard has a title"
    );
    let templating = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    assert!(
        templating
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable is templated"
    );

    let mut panels = Vec::new();
    collect_panels(&dashboard["panels"], &mut panels);
    let mut titles = BTreeSet::new();
    let mut queries = 0;
    for panel in &panels {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.trim().is_empty(), "a panel without a title: {panel}");
        assert!(
            titles.insert(title.to_string()),
            "two panels titled {title:?}"
        );
        assert!(
            panel["datasource"]["uid"]
                .as_str()
                .is_some_and(|uid| uid.starts_with('$')),
            "panel {title:?}: its datasource is not the templated one"
        );
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        let exprs: Vec<&str> = targets
            .iter()
            .filter_map(|t| t["expr"].as_str())
            .filter(|e| !e.trim().is_empty())
            .collect();
        assert!(
            !exprs.is_empty(),
            "panel {title:?} has no target with an expr"
        );
        queries += exprs.len();
    }
    assert!(titles.len() >= 12, "only {} panels", titles.len());
    assert!(queries >= titles.len());
}

/// Panels, including those nested in collapsed rows.
fn collect_panels<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    for panel in value.as_array().into_iter().flatten() {
        out.push(panel);
        collect_panels(&panel["panels"], out);
    }
}

/// One `- alert:` entry of alerts.yml, as raw lines.
struct AlertRule {
    name: String,
    lines: Vec<String>,
}

fn alert_rules(text: &str) -> Vec<AlertRule> {
    let mut rules: Vec<AlertRule> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            rules.push(AlertRule {
                name: name.trim().to_string(),
                lines: Vec::new(),
            });
        } else if trimmed.starts_with("- record:") || trimmed.starts_with("- name:") {
            // Not part of an alert (a recording rule or the next group).
            rules.push(AlertRule {
                name: String::new(),
                lines: Vec::new(),
            });
        } else if let Some(rule) = rules.last_mut() {
            rule.lines.push(trimmed.to_string());
        }
    }
    rules.retain(|r| !r.name.is_empty());
    rules
}

fn field<'a>(rule: &'a AlertRule, key: &str) -> Option<&'a str> {
    rule.lines
        .iter()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().trim_matches('"').trim_matches('\''))
}

/// GitHub's anchor for a Markdown heading: lowercase, spaces to `-`,
/// punctuation other than `-` and `_` removed.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn runbook_anchors() -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_code = false;
    for line in read("docs/runbook.md").lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            anchors.insert(github_anchor(&line[hashes..]));
        }
    }
    anchors
}

#[test]
fn every_alert_is_complete_and_links_to_a_runbook_heading() {
    let text = read("deploy/prometheus/alerts.yml");
    assert!(
        text.lines().any(|l| l.trim() == "- name: sealroom"),
        "alerts.yml has a group named sealroom"
    );
    let rules = alert_rules(&text);
    assert!(rules.len() >= 7, "only {} alerts", rules.len());
    let anchors = runbook_anchors();
    let mut names = BTreeSet::new();
    for rule in &rules {
        let name = &rule.name;
        assert!(names.insert(name.clone()), "alert {name} appears twice");
        for key in [
            "expr:",
            "for:",
            "severity:",
            "summary:",
            "description:",
            "runbook_url:",
        ] {
            assert!(
                field(rule, key).is_some(),
                "alert {name} has no {key} (lines: {:?})",
                rule.lines
            );
        }
        let severity = field(rule, "severity:").unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "alert {name}: severity {severity:?}"
        );
        let url = field(rule, "runbook_url:").unwrap_or_default();
        let (page, anchor) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("alert {name}: runbook_url {url:?} has no #anchor"));
        assert!(
            page.ends_with("docs/runbook.md"),
            "alert {name}: runbook_url {url:?} does not point to docs/runbook.md"
        );
        assert!(
            anchors.contains(anchor),
            "alert {name}: #{anchor} is not a heading of docs/runbook.md; headings: {anchors:?}"
        );
    }
}

#[test]
fn anchors_follow_github_rules() {
    assert_eq!(
        github_anchor(" Certificate expiry and key rotation"),
        "certificate-expiry-and-key-rotation"
    );
    assert_eq!(
        github_anchor("Consistency (MAC) failure: `inconsistent_shares`"),
        "consistency-mac-failure-inconsistent_shares"
    );
}
