//! An in-process harness: three machines exchanging messages through an
//! in-memory network with a mock clock, and a hook that sees (and may
//! corrupt, drop, duplicate, delay or reorder) every message in flight.
//!
//! Used by the protocol tests (attacks) and by [`crate::bench`]. The harness
//! also records everything a helper emits *outside* the helper-to-helper
//! channel — its outcome (outputs or abort evidence) and abort actions — in
//! order, so tests can check that no honest helper released anything before
//! the check that covers it.

use std::collections::VecDeque;

use crate::error::Abort;
use crate::machine::{Action, HelperIndex, Input, Machine, Millis, Step};

/// A message in flight.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// Sender.
    pub from: HelperIndex,
    /// Recipient.
    pub to: HelperIndex,
    /// Encoded message.
    pub bytes: Vec<u8>,
    /// Sequence number of this message among all sent so far.
    pub seq: u64,
    /// Whether this is a held message being released (the hook sees it a
    /// second time and may still rewrite it, e.g. a rushing adversary that
    /// waited for the honest messages of the round).
    pub released: bool,
}

/// What the hook decides for one message.
#[derive(Debug)]
pub enum Fate {
    /// Deliver these (possibly modified, possibly several) messages now.
    Deliver(Vec<InFlight>),
    /// Hold it; held messages are passed to the hook again (with
    /// `released` set) and delivered once nothing else is in flight (delay,
    /// reordering, rushing).
    Hold(InFlight),
    /// Drop it (withholding).
    Drop,
}

/// A per-message hook.
pub type Hook<'a> = Box<dyn FnMut(&InFlight) -> Fate + 'a>;

/// What the harness saw.
#[derive(Debug)]
pub struct Report<O> {
    /// Each helper's outcome, if it finished.
    pub outcomes: [Option<O>; 3],
    /// Abort evidence each helper emitted (outside the helper channel).
    pub aborts: [Vec<Abort>; 3],
    /// Bytes each helper sent.
    pub bytes_sent: [u64; 3],
    /// Messages each helper sent.
    pub messages_sent: [u64; 3],
    /// Final mock time.
    pub now: Millis,
}

/// Runs three machines to completion (or until `max_steps` inputs).
pub fn run<M: Machine>(
    machines: [M; 3],
    mut hook: Option<Hook<'_>>,
    max_steps: usize,
) -> Report<M::Outcome> {
    let mut slots: [Option<M>; 3] = machines.map(Some);
    let mut report = Report {
        outcomes: [None, None, None],
        aborts: [Vec::new(), Vec::new(), Vec::new()],
        bytes_sent: [0; 3],
        messages_sent: [0; 3],
        now: Millis(0),
    };
    let mut queue: VecDeque<InFlight> = VecDeque::new();
    let mut held: VecDeque<InFlight> = VecDeque::new();
    let mut seq = 0u64;
    let mut inputs: VecDeque<(usize, Input)> = (0..3).map(|i| (i, Input::Start)).collect();
    let mut steps = 0;
    loop {
        if steps >= max_steps {
            break;
        }
        let (who, input) = if let Some(x) = inputs.pop_front() {
            x
        } else if let Some(m) = queue.pop_front() {
            (
                m.to.index(),
                Input::Inbound {
                    from: m.from,
                    msg: m.bytes,
                },
            )
        } else if let Some(mut m) = held.pop_front() {
            m.released = true;
            match hook.as_mut().map(|h| h(&m)) {
                None | Some(Fate::Hold(_)) => queue.push_back(m),
                Some(Fate::Deliver(list)) => queue.extend(list),
                Some(Fate::Drop) => {}
            }
            continue;
        } else {
            // Nothing in flight: advance the clock to the earliest deadline.
            let next = slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().and_then(|m| m.next_deadline()).map(|d| (d, i)))
                .min();
            match next {
                Some((d, i)) => {
                    report.now = report.now.max(d);
                    (i, Input::Timer)
                }
                None => break,
            }
        };
        steps += 1;
        let Some(machine) = slots[who].take() else {
            continue;
        };
        let actions = match machine.handle(report.now, input) {
            Ok(Step::Continue(m, actions)) => {
                slots[who] = Some(m);
                actions
            }
            Ok(Step::Finish(outcome, actions)) => {
                report.outcomes[who] = Some(outcome);
                actions
            }
            Err((m, _usage)) => {
                slots[who] = Some(m);
                Vec::new()
            }
        };
        for action in actions {
            match action {
                Action::Send { to, msg } => {
                    report.bytes_sent[who] += msg.len() as u64;
                    report.messages_sent[who] += 1;
                    let flight = InFlight {
                        from: HelperIndex::ALL[who],
                        to,
                        bytes: msg,
                        seq,
                        released: false,
                    };
                    seq += 1;
                    match hook.as_mut().map(|h| h(&flight)) {
                        None => queue.push_back(flight),
                        Some(Fate::Deliver(list)) => queue.extend(list),
                        Some(Fate::Hold(m)) => held.push_back(m),
                        Some(Fate::Drop) => {}
                    }
                }
                Action::Abort(a) => report.aborts[who].push(a),
            }
        }
        if slots.iter().all(Option::is_none) {
            break;
        }
    }
    report
}

/// Runs three machines on three threads connected by channels (no hook, no
/// timers): the closest in-process stand-in for three helper processes,
/// used by [`crate::bench`]. Returns each helper's outcome and bytes sent.
pub fn run_threaded<M>(machines: [M; 3]) -> ([Option<M::Outcome>; 3], [u64; 3])
where
    M: Machine + Send,
    M::Outcome: Send,
{
    use std::sync::mpsc;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..3)
        .map(|_| mpsc::channel::<(HelperIndex, Vec<u8>)>())
        .unzip();
    let results: Vec<(Option<M::Outcome>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = machines
            .into_iter()
            .zip(receivers)
            .enumerate()
            .map(|(i, (machine, rx))| {
                // No sender to itself: when both peers are gone, `recv` fails
                // instead of blocking forever.
                let senders: Vec<Option<mpsc::Sender<_>>> = senders
                    .iter()
                    .enumerate()
                    .map(|(j, s)| (j != i).then(|| s.clone()))
                    .collect();
                scope.spawn(move || {
                    let mut bytes = 0u64;
                    let mut send = |actions: Vec<Action>| {
                        for a in actions {
                            if let Action::Send { to, msg } = a {
                                bytes += msg.len() as u64;
                                // A closed channel means that helper finished.
                                if let Some(Some(s)) = senders.get(to.index()) {
                                    let _ = s.send((HelperIndex::ALL[i], msg));
                                }
                            }
                        }
                    };
                    let mut input = Input::Start;
                    let mut machine = machine;
                    loop {
                        match machine.handle(Millis(0), input) {
                            Ok(Step::Continue(m, actions)) => {
                                send(actions);
                                machine = m;
                            }
                            Ok(Step::Finish(outcome, actions)) => {
                                send(actions);
                                return (Some(outcome), bytes);
                            }
                            Err((m, _)) => machine = m,
                        }
                        match rx.recv() {
                            Ok((from, msg)) => input = Input::Inbound { from, msg },
                            Err(_) => return (None, bytes),
                        }
                    }
                })
            })
            .collect();
        drop(senders);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((None, 0)))
            .collect()
    });
    let mut outcomes: [Option<M::Outcome>; 3] = [None, None, None];
    let mut bytes = [0u64; 3];
    for (i, (o, b)) in results.into_iter().enumerate() {
        outcomes[i] = o;
        bytes[i] = b;
    }
    (outcomes, bytes)
}
