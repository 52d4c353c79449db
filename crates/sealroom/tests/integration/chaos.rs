//! Chaos over real node processes (issue #13): a federation from
//! `sealroom init`, every node its own `sealroom node` process, and a helper
//! killed (SIGKILL) or frozen (SIGSTOP) at each step of a round, in additive
//! and threshold mode, then restarted with the same config (or continued).
//!
//! Every round must end the way the protocol says it can: completed with
//! the plaintext sum when enough shares survive, otherwise aborted with the
//! right signed reason; the round after a fault completes again; and
//! afterwards `sealroom audit verify --federation` passes on every node's
//! store. After each fault, the faulted helper's own store is read
//! directly (issue #17's durability check): it still holds the share of
//! every client the round included (every one of them was acknowledged by
//! every helper that reported it), it recorded its answer for a completed
//! additive round, and no answer for a round that ended while it was down; `sealroom audit cross-check` at the end finds no helper
//! that signed two answers for one round.
//!
//! The short version (helper-1, each fault at each step, both modes) runs
//! under `cargo test`. The full one, every helper and several repetitions:
//!
//! ```text
//! SEALROOM_CHAOS_FULL=1 cargo test --release -p sealroom --test integration chaos:: -- --nocapture
//! ```

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use sealroom_core::QuantSpec;

use crate::common;
use common::{
    Node, RoundOutcome, free_base_port, is_plaintext_sum, log_tails, sealroom, set_windows,
    wait_for_port,
};

/// The federation's windows, short so a round with a silent client (which
/// makes the helpers wait out the upload window) takes a few seconds.
const UPLOAD_WINDOW_MS: u64 = 3_000;
const AGGREGATION_WINDOW_MS: u64 = 3_000;
/// Vector length of every round.
const DIM: usize = 32;
/// Clients: the last is never started, so helpers always wait out the
/// upload window, which is what gives a fault its place in the round.
const CLIENTS: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGKILL, then a new process with the same config.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Freeze,
}

#[derive(Clone, Copy, Debug)]
enum Step {
    /// Down when the round starts, back 300 ms later (inside the window in
    /// which the coordinator offers the descriptor again).
    AtStart,
    /// Down after the clients uploaded, back before the report deadline.
    InUploadWindow,
    /// Down after the clients uploaded, back only after the round ended:
    /// the helper misses its report and the inclusion set.
    AcrossReport,
    /// Down just after the report deadline, back at once: the helper has
    /// reported or is about to, and may have to answer after a restart (it
    /// re-sends the same report; the coordinator asks it again).
    AtReportDeadline,
}

/// Every node of a federation; killed when dropped, so a failing test leaves
/// no process behind.
struct Federation {
    dir: tempfile::TempDir,
    base: u16,
    helpers: Vec<Node>,
    others: Vec<Node>,
    spec: QuantSpec,
    threshold: Option<usize>,
}

impl Drop for Federation {
    fn drop(&mut self) {
        for node in self.helpers.iter_mut().chain(self.others.iter_mut()) {
            if let Some(child) = &node.child {
                let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
                if let Some(pid) = pid {
                    let _ = kill_process(pid, Signal::CONT);
                }
            }
            node.kill();
        }
    }
}

/// The outcome of one `sealroom round start --json`.
type Outcome = RoundOutcome;

impl Federation {
    fn start(threshold: Option<usize>) -> Federation {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = free_base_port(110);
        let mut init = sealroom();
        init.args(["init", "--helpers", "3", "--clients"])
            .arg(CLIENTS.to_string())
            .args(["--base-port", &base.to_string()]);
        if let Some(t) = threshold {
            init.args(["--threshold", &t.to_string()])
                .arg("--allow-unverified-threshold-release");
        }
        let out = init.arg(dir.path()).output().expect("init runs");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let spec = set_windows(dir.path(), UPLOAD_WINDOW_MS, AGGREGATION_WINDOW_MS);

        let helpers: Vec<Node> = (0..3)
            .map(|i| Node::spawn(dir.path(), &format!("helper-{i}")))
            .collect();
        let mut others = vec![Node::spawn(dir.path(), "coordinator")];
        for port in base..=base + 3 {
            wait_for_port(port);
        }
        // The last client stays offline.
        for i in 0..CLIENTS - 1 {
            others.push(Node::spawn(dir.path(), &format!("client-{i}")));
        }
        let fed = Federation {
            dir,
            base,
            helpers,
            others,
            spec,
            threshold,
        };
        // Clients connect to the coordinator's watch stream; a round
        // started before they do goes on without them.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let outcome = fed.round_start();
            if outcome.status() == "completed" && fed.included(&outcome).len() == CLIENTS - 1 {
                fed.check_sum(&outcome);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no round with every online client: {}",
                outcome.text
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        fed
    }

    fn admin(&self) -> PathBuf {
        self.dir.path().join("admin.toml")
    }

    fn round_command(&self) -> Command {
        let mut cmd = sealroom();
        cmd.args(["round", "start", "--task", "synthetic", "--json", "--dim"])
            .arg(DIM.to_string())
            .arg("--config")
            .arg(self.admin());
        cmd
    }

    fn round_start(&self) -> Outcome {
        let out = self.round_command().output().expect("round start runs");
        Outcome::parse(&out.stdout, &out.stderr)
    }

    fn included(&self, outcome: &Outcome) -> Vec<u64> {
        outcome.included()
    }

    /// A completed round's values are the exact sum of the included
    /// clients' quantized synthetic inputs.
    fn check_sum(&self, outcome: &Outcome) {
        let round = outcome.json["round_id"].as_u64().expect("round id");
        assert!(
            is_plaintext_sum(&self.spec, &outcome.json, DIM),
            "round {round}: {}",
            outcome.text
        );
    }

    /// Runs one round with `fault` applied to helper `h` at `step`; returns
    /// its outcome once the helper is back.
    fn round_with_fault(&mut self, h: usize, fault: Fault, step: Step) -> Outcome {
        let inject = |node: &mut Node| match fault {
            Fault::Kill => node.kill(),
            Fault::Freeze => node.signal(Signal::STOP),
        };
        let recover = |node: &mut Node| match fault {
            Fault::Kill => node.start(),
            Fault::Freeze => node.signal(Signal::CONT),
        };
        if matches!(step, Step::AtStart) {
            inject(&mut self.helpers[h]);
        }
        let round = self
            .round_command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("round start runs");
        match step {
            Step::AtStart => std::thread::sleep(Duration::from_millis(300)),
            // Clients hear of the round within the descriptor grace (a
            // quarter of the window) and upload at once.
            Step::InUploadWindow | Step::AcrossReport => {
                std::thread::sleep(Duration::from_millis(UPLOAD_WINDOW_MS / 2));
                inject(&mut self.helpers[h]);
            }
            Step::AtReportDeadline => {
                std::thread::sleep(Duration::from_millis(UPLOAD_WINDOW_MS + 30));
                inject(&mut self.helpers[h]);
            }
        }
        if matches!(step, Step::InUploadWindow) {
            std::thread::sleep(Duration::from_millis(200));
        }
        if !matches!(step, Step::AcrossReport) {
            recover(&mut self.helpers[h]);
        }
        let out = round.wait_with_output().expect("round start ends");
        if matches!(step, Step::AcrossReport) {
            recover(&mut self.helpers[h]);
        }
        if matches!(fault, Fault::Kill) {
            wait_for_port(self.base + 1 + u16::try_from(h).expect("small"));
        }
        Outcome::parse(&out.stdout, &out.stderr)
    }

    /// `sealroom audit verify --federation` on the coordinator's and every
    /// helper's store (clients keep no audit log).
    fn verify_audit_logs(&mut self) {
        for node in self.helpers.iter_mut().chain(self.others.iter_mut()) {
            node.stop();
        }
        let federation = self.dir.path().join("federation.toml");
        for node in self.helpers.iter().chain(self.others.iter().take(1)) {
            let out = sealroom()
                .args(["audit", "verify", "--config"])
                .arg(&node.config)
                .arg("--federation")
                .arg(&federation)
                .output()
                .expect("audit verify runs");
            assert!(
                out.status.success(),
                "audit verify failed on {}: {}{}",
                node.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The logs agree with each other: no artifact missing from its
        // signer's log, no signer with two artifacts of one kind for a round.
        // The first helper's log goes through an export file, as it would
        // from another machine; the others are read from their stores.
        let export = self
            .dir
            .path()
            .join(format!("{}-audit.jsonl", self.helpers[0].name));
        let out = sealroom()
            .args(["audit", "export", "--config"])
            .arg(&self.helpers[0].config)
            .arg("--output")
            .arg(&export)
            .output()
            .expect("audit export runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cross = sealroom();
        cross
            .args(["audit", "cross-check", "--export"])
            .arg(&export);
        for node in self
            .helpers
            .iter()
            .skip(1)
            .chain(self.others.iter().take(1))
        {
            cross.arg("--config").arg(&node.config);
        }
        let out = cross
            .arg("--federation")
            .arg(&federation)
            .output()
            .expect("audit cross-check runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("the logs agree"),
            "audit cross-check failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The durability check on helper `h`'s store after `outcome` (its
    /// round and the next): the shares of every included client are there
    /// (additive: every helper holds every included client's share; 2-of-3:
    /// a helper that answered does), and an answer is recorded for a
    /// completed additive round; with `missed_report` (the helper was down
    /// from the upload window until the round ended) no answer is.
    fn check_helper_store(&self, h: usize, outcome: &Outcome, case: &str, missed_report: bool) {
        let config = sealroom_node::config::load_node_config(&self.helpers[h].config)
            .expect("the helper's config loads");
        let db = config.data_dir.join("sealroom.db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let state = runtime.block_on(async {
            let store = sealroom_store::Store::open_sqlite(&db)
                .await
                .expect("the helper's store opens");
            store
                .helper_state()
                .await
                .expect("the helper's state loads")
        });
        let round_id = outcome.round_id();
        let round = state.rounds.iter().find(|r| {
            <sealroom_protocol::pb::RoundDescriptor as prost::Message>::decode(
                r.descriptor.body.as_slice(),
            )
            .is_ok_and(|d| d.round_id == round_id)
        });
        let additive = self.threshold.is_none();
        match (outcome.status(), round) {
            ("completed", Some(round)) => {
                let held: std::collections::BTreeSet<u64> =
                    round.uploads.iter().map(|(c, _)| u64::from(*c)).collect();
                if additive || round.answered.is_some() {
                    for c in self.included(outcome) {
                        assert!(
                            held.contains(&c),
                            "{case}: helper-{h} lost the acknowledged share of client {c} in round {round_id} (holds {held:?})"
                        );
                    }
                }
                if additive {
                    assert!(
                        round.answered.is_some(),
                        "{case}: helper-{h} has no answer recorded for completed round {round_id}"
                    );
                }
            }
            ("completed", None) => assert!(
                !additive,
                "{case}: helper-{h} has no record of completed additive round {round_id}"
            ),
            // Back after the round ended, it may report it late (the
            // coordinator has moved on), but it can have answered nothing.
            (_, Some(round)) if missed_report => assert!(
                round.answered.is_none(),
                "{case}: helper-{h} recorded an answer for round {round_id}, which ended while it was down"
            ),
            // Aborted otherwise: a helper may have answered a set whose
            // round then ran out of time; it answered that set only.
            _ => {}
        }
    }

    fn logs(&self) -> String {
        log_tails(
            self.helpers
                .iter()
                .chain(self.others.iter())
                .map(|n| (n.name.as_str(), n.log.as_path())),
            30,
        )
    }
}

fn full() -> bool {
    std::env::var_os("SEALROOM_CHAOS_FULL").is_some_and(|v| v == "1")
}

/// Runs every fault at every step on the chosen helpers and checks each
/// round's outcome, the round after it, and finally every audit log.
fn chaos(threshold: Option<usize>) {
    let mut fed = Federation::start(threshold);
    let helpers: Vec<usize> = if full() { vec![0, 1, 2] } else { vec![1] };
    let repetitions = if full() { 3 } else { 1 };
    for _ in 0..repetitions {
        for &h in &helpers {
            for fault in [Fault::Kill, Fault::Freeze] {
                for step in [
                    Step::AtStart,
                    Step::InUploadWindow,
                    Step::AcrossReport,
                    Step::AtReportDeadline,
                ] {
                    let case = format!("helper-{h} {fault:?} {step:?} (threshold {threshold:?})");
                    eprintln!("chaos: {case}");
                    let outcome = fed.round_with_fault(h, fault, step);
                    eprintln!("chaos: {case}: {} {}", outcome.status(), outcome.reason());
                    match (step, threshold) {
                        // Which side of the deadline the fault lands on is
                        // a race: either outcome is right, the audit logs
                        // must agree afterwards either way.
                        (Step::AtReportDeadline, None)
                            if (outcome.status(), outcome.reason())
                                == ("aborted", "helper_missing") => {}
                        // Additive n-of-n: a helper that misses its report
                        // leaves a share that nobody else holds.
                        (Step::AcrossReport, None) => {
                            assert_eq!(
                                (outcome.status(), outcome.reason()),
                                ("aborted", "helper_missing"),
                                "{case}: {}\n{}",
                                outcome.text,
                                fed.logs()
                            );
                        }
                        // Every other case: every share survives (or enough
                        // of them, for 2-of-3), so the round completes.
                        _ => {
                            assert_eq!(
                                outcome.status(),
                                "completed",
                                "{case}: {}\n{}",
                                outcome.text,
                                fed.logs()
                            );
                            assert_eq!(
                                fed.included(&outcome).len(),
                                CLIENTS - 1,
                                "{case}: {}",
                                outcome.text
                            );
                            fed.check_sum(&outcome);
                        }
                    }
                    fed.check_helper_store(h, &outcome, &case, matches!(step, Step::AcrossReport));
                    // And the federation is whole again: the next round
                    // completes with every online client.
                    let next = fed.round_start();
                    assert_eq!(
                        next.status(),
                        "completed",
                        "after {case}: {}\n{}",
                        next.text,
                        fed.logs()
                    );
                    assert_eq!(fed.included(&next).len(), CLIENTS - 1, "{}", next.text);
                    fed.check_sum(&next);
                    fed.check_helper_store(h, &next, &format!("after {case}"), false);
                }
            }
        }
    }
    fed.verify_audit_logs();
}

#[test]
fn chaos_additive() {
    chaos(None);
}

#[test]
fn chaos_threshold() {
    chaos(Some(2));
}
