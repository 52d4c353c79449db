//! `--otlp-endpoint` as a user meets it: a bad endpoint is refused before
//! anything starts, with a message that says what a good one looks like.

use std::process::{Command, Output};

fn sealroom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sealroom"))
        .args(args)
        .output()
        .expect("running sealroom")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_otlp_endpoint_is_refused_with_an_example() {
    for command in ["node", "demo"] {
        for (endpoint, says) in [
            ("localhost:4317", "http:// or https://"),
            ("grpc://127.0.0.1:4317", "http:// or https://"),
            ("http://127.0.0.1:4318/v1/traces", "no path"),
        ] {
            let mut args = vec![command, "--otlp-endpoint", endpoint];
            if command == "node" {
                args.extend(["--config", "does-not-exist.toml"]);
            }
            let output = sealroom(&args);
            assert!(!output.status.success(), "{command} {endpoint} accepted");
            let stderr = stderr(&output);
            assert!(
                stderr.contains("--otlp-endpoint") && stderr.contains(says),
                "{command} {endpoint}: {stderr}"
            );
            assert!(stderr.contains("http://127.0.0.1:4317"), "{stderr}");
        }
    }
}

#[test]
fn otlp_ca_needs_an_endpoint_and_https_needs_a_ca() {
    let output = sealroom(&[
        "node",
        "--config",
        "does-not-exist.toml",
        "--otlp-ca",
        "ca.pem",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--otlp-endpoint"),
        "{}",
        stderr(&output)
    );

    let output = sealroom(&[
        "demo",
        "--otlp-endpoint",
        "https://127.0.0.1:4317",
        "--out",
        "never-written",
    ]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--otlp-ca"), "{}", stderr(&output));
}

#[test]
fn help_documents_the_otlp_options() {
    for command in ["node", "demo"] {
        let output = sealroom(&[command, "--help"]);
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("--otlp-endpoint <URL>"), "{help}");
        assert!(help.contains("--otlp-ca <FILE>"), "{help}");
    }
}
