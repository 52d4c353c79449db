//! The sans-IO contract every engine role implements (STYLE.md §2), and the
//! lock-step round driver both the preprocessing and the online session use.
//!
//! A machine consumes `(now, Input)` and returns a [`Step`]: either it goes on
//! (`Continue(self, actions)`) or it is finished (`Finish(outcome, actions)`);
//! a finished session no longer exists, so it cannot be driven again. Actions
//! are bytes to send to one of the other two helpers, or a typed [`Abort`]
//! for the shell to report. Nothing here reads a clock or a socket.
//!
//! **Rounds.** Every protocol in this crate is a fixed sequence of rounds
//! known before it starts (it depends on the program and the batch sizes, never
//! on data). In round `r` each helper sends exactly one message to each of the
//! other two and waits for theirs. The driver accepts a peer's round-`r+1`
//! message early (a fast peer may be one round ahead) and refuses anything
//! else: an older round (replay), a later one, a duplicate, a message for
//! another session, or a body whose kind or size differs from what the round
//! expects — all before a byte of the body is parsed into field elements.

use crate::error::{Abort, AbortReason};
use crate::wire::{Body, Expect, Message};

/// Milliseconds on the caller's clock (monotonic; the origin is the caller's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

/// One of the three helpers (0, 1 or 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HelperIndex(u8);

impl HelperIndex {
    /// All three helpers in order.
    pub const ALL: [HelperIndex; 3] = [HelperIndex(0), HelperIndex(1), HelperIndex(2)];

    /// `Some` for 0, 1 and 2.
    pub const fn new(index: usize) -> Option<HelperIndex> {
        if index < 3 {
            Some(HelperIndex(index as u8))
        } else {
            None
        }
    }

    /// The index as a `usize` in `0..3`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Helper `i + 1 mod 3`.
    pub const fn next(self) -> HelperIndex {
        HelperIndex((self.0 + 1) % 3)
    }

    /// Helper `i − 1 mod 3`.
    pub const fn prev(self) -> HelperIndex {
        HelperIndex((self.0 + 2) % 3)
    }
}

/// What a machine is fed.
#[derive(Debug)]
pub enum Input {
    /// Begin (sends the first round's messages).
    Start,
    /// Bytes received from another helper over the authenticated channel.
    Inbound {
        /// The authenticated sender (from the mTLS identity, not the bytes).
        from: HelperIndex,
        /// The encoded [`Message`].
        msg: Vec<u8>,
    },
    /// A timer the shell set for [`Machine::next_deadline`] fired.
    Timer,
}

/// What the shell must do.
#[derive(Debug)]
pub enum Action {
    /// Send these bytes to helper `to` (helper-to-helper channel only).
    Send {
        /// Recipient.
        to: HelperIndex,
        /// The encoded [`Message`]; the shell never re-decodes it.
        msg: Vec<u8>,
    },
    /// The computation aborted; report the evidence (it carries no secret).
    Abort(Abort),
}

/// The result of one step.
pub enum Step<M: Machine> {
    /// Still running.
    Continue(M, Vec<Action>),
    /// Done (successfully or aborted); the machine is consumed.
    Finish(M::Outcome, Vec<Action>),
}

impl<M: Machine> core::fmt::Debug for Step<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Step::Continue(_, a) => write!(f, "Continue({} actions)", a.len()),
            Step::Finish(_, a) => write!(f, "Finish({} actions)", a.len()),
        }
    }
}

/// A misuse of the machine by its own shell (not a peer deviation): the
/// state is returned unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// `Start` was given twice.
    #[error("the machine was already started")]
    AlreadyStarted,
    /// A message arrived before `Start`.
    #[error("input before Start")]
    NotStarted,
    /// The shell claimed a message came from this helper itself.
    #[error("a message cannot come from this helper itself")]
    FromSelf,
}

/// The step contract.
pub trait Machine: Sized {
    /// What a finished machine yields.
    type Outcome;
    /// Consumes one input.
    fn handle(self, now: Millis, input: Input) -> Result<Step<Self>, (Self, UsageError)>;
    /// When the shell should feed [`Input::Timer`], if ever.
    fn next_deadline(&self) -> Option<Millis>;
}

/// Outgoing bodies of one round, to the next and the previous helper.
pub(crate) enum Outgoing {
    /// Different bodies.
    Split { to_next: Body, to_prev: Body },
    /// The same body to both (encoded once).
    Same(Body),
}

impl Outgoing {
    pub fn same(body: Body) -> Outgoing {
        Outgoing::Same(body)
    }
}

/// What a round-based protocol tells the driver after a round completes.
pub(crate) enum Progress<O> {
    Next,
    Done(O),
}

/// A lock-step protocol the [`Driver`] runs.
pub(crate) trait Rounds {
    type Outcome;
    /// Total number of rounds (fixed before the start).
    fn round_count(&self) -> u32;
    /// Kind and size of the body `from` sends in round `r`.
    fn expect(&self, round: u32, from: HelperIndex) -> Expect;
    /// This helper's messages for round `r`.
    fn begin(&mut self, round: u32) -> Result<Outgoing, AbortReason>;
    /// Both peers' bodies for round `r` (index 0: from next, 1: from prev).
    fn finish(
        &mut self,
        round: u32,
        from_next: Body,
        from_prev: Body,
    ) -> Result<Progress<Self::Outcome>, AbortReason>;
}

/// Runs a [`Rounds`] protocol: framing, buffering one round ahead,
/// replay/duplicate refusal, deadlines.
pub(crate) struct Driver<P> {
    pub proto: P,
    me: HelperIndex,
    session: [u8; 32],
    kind_tag: u8,
    round: u32,
    started: bool,
    /// Bodies of the current round: [from next, from prev].
    current: [Option<Body>; 2],
    /// Raw messages of the next round, validated when it begins.
    ahead: [Option<Vec<u8>>; 2],
    deadline: Option<Millis>,
    timeout: u64,
}

pub(crate) enum DriverStep<O> {
    Continue(Vec<Action>),
    Finish(Result<O, Abort>, Vec<Action>),
}

impl<P: Rounds> Driver<P> {
    pub fn new(proto: P, me: HelperIndex, session: [u8; 32], kind_tag: u8, timeout: u64) -> Self {
        Driver {
            proto,
            me,
            session,
            kind_tag,
            round: 0,
            started: false,
            current: [None, None],
            ahead: [None, None],
            deadline: None,
            timeout,
        }
    }

    pub fn round(&self) -> u32 {
        self.round
    }

    pub fn deadline(&self) -> Option<Millis> {
        self.deadline
    }

    /// The largest message a peer may send in any round of this protocol,
    /// framing included (a shell bounds what it buffers by this).
    pub fn max_inbound_bytes(&self) -> usize {
        let mut max = 0;
        for round in 0..self.proto.round_count() {
            for from in [self.me.next(), self.me.prev()] {
                let e = self.proto.expect(round, from);
                max = max.max(
                    e.elems
                        .saturating_mul(16)
                        .saturating_add(e.blobs.saturating_mul(32)),
                );
            }
        }
        max.saturating_add(crate::wire::HEADER_BYTES)
    }

    fn slot(&self, from: HelperIndex) -> usize {
        if from == self.me.next() { 0 } else { 1 }
    }

    fn abort(&self, reason: AbortReason, mut actions: Vec<Action>) -> DriverStep<P::Outcome> {
        let abort = Abort {
            reason,
            round: self.round,
        };
        actions.push(Action::Abort(abort.clone()));
        DriverStep::Finish(Err(abort), actions)
    }

    /// Handles one input. `Err` is a usage error (state unchanged).
    pub fn step(
        &mut self,
        now: Millis,
        input: Input,
    ) -> Result<DriverStep<P::Outcome>, UsageError> {
        match input {
            Input::Start => {
                if self.started {
                    return Err(UsageError::AlreadyStarted);
                }
                self.started = true;
                let mut actions = Vec::new();
                Ok(self
                    .enter_round(now, &mut actions)
                    .unwrap_or_else(|| DriverStep::Continue(actions)))
            }
            Input::Timer => {
                if !self.started {
                    return Err(UsageError::NotStarted);
                }
                match self.deadline {
                    Some(d) if now >= d => {
                        let missing = [self.me.next(), self.me.prev()]
                            .into_iter()
                            .filter(|h| self.current[self.slot(*h)].is_none())
                            .collect();
                        Ok(self.abort(AbortReason::Timeout { missing }, Vec::new()))
                    }
                    _ => Ok(DriverStep::Continue(Vec::new())),
                }
            }
            Input::Inbound { from, msg } => {
                if !self.started {
                    return Err(UsageError::NotStarted);
                }
                if from == self.me {
                    return Err(UsageError::FromSelf);
                }
                Ok(self.inbound(now, from, msg))
            }
        }
    }

    fn inbound(
        &mut self,
        now: Millis,
        from: HelperIndex,
        bytes: Vec<u8>,
    ) -> DriverStep<P::Outcome> {
        let header = match Message::peek_header(&bytes) {
            Ok(h) => h,
            Err(error) => {
                return self.abort(AbortReason::Malformed { peer: from, error }, Vec::new());
            }
        };
        if header.session != self.session || header.protocol != self.kind_tag {
            return self.abort(AbortReason::WrongSession { peer: from }, Vec::new());
        }
        if header.sender != from.index() as u8 {
            return self.abort(AbortReason::WrongSender { peer: from }, Vec::new());
        }
        let slot = self.slot(from);
        if header.round == self.round {
            if self.current[slot].is_some() {
                return self.abort(
                    AbortReason::Duplicate {
                        peer: from,
                        round: header.round,
                    },
                    Vec::new(),
                );
            }
            match self.parse(from, &bytes) {
                Ok(body) => self.current[slot] = Some(body),
                Err(reason) => return self.abort(reason, Vec::new()),
            }
        } else if header.round == self.round.saturating_add(1) {
            if self.ahead[slot].is_some() {
                return self.abort(
                    AbortReason::Duplicate {
                        peer: from,
                        round: header.round,
                    },
                    Vec::new(),
                );
            }
            self.ahead[slot] = Some(bytes);
            return DriverStep::Continue(Vec::new());
        } else if header.round < self.round {
            return self.abort(
                AbortReason::Replay {
                    peer: from,
                    round: header.round,
                },
                Vec::new(),
            );
        } else {
            return self.abort(
                AbortReason::OutOfOrder {
                    peer: from,
                    round: header.round,
                },
                Vec::new(),
            );
        }
        let mut actions = Vec::new();
        self.advance(now, &mut actions)
            .unwrap_or(DriverStep::Continue(actions))
    }

    fn parse(&self, from: HelperIndex, bytes: &[u8]) -> Result<Body, AbortReason> {
        let expect = self.proto.expect(self.round, from);
        Message::decode_expecting(bytes, &expect)
            .map_err(|error| AbortReason::Malformed { peer: from, error })
    }

    /// Completes rounds while both bodies are present.
    fn advance(
        &mut self,
        now: Millis,
        actions: &mut Vec<Action>,
    ) -> Option<DriverStep<P::Outcome>> {
        loop {
            if self.current[0].is_none() || self.current[1].is_none() {
                return None;
            }
            let (Some(from_next), Some(from_prev)) =
                (self.current[0].take(), self.current[1].take())
            else {
                return None;
            };
            match self.proto.finish(self.round, from_next, from_prev) {
                Err(reason) => return Some(self.abort(reason, core::mem::take(actions))),
                Ok(Progress::Done(outcome)) => {
                    self.deadline = None;
                    return Some(DriverStep::Finish(Ok(outcome), core::mem::take(actions)));
                }
                Ok(Progress::Next) => {}
            }
            self.round += 1;
            if let Some(step) = self.enter_round(now, actions) {
                return Some(step);
            }
            // Messages that arrived early for this round.
            for slot in 0..2 {
                if let Some(raw) = self.ahead[slot].take() {
                    let from = if slot == 0 {
                        self.me.next()
                    } else {
                        self.me.prev()
                    };
                    match self.parse(from, &raw) {
                        Ok(body) => self.current[slot] = Some(body),
                        Err(reason) => return Some(self.abort(reason, core::mem::take(actions))),
                    }
                }
            }
        }
    }

    /// Sends this round's messages; `Some` if that ended the machine.
    fn enter_round(
        &mut self,
        now: Millis,
        actions: &mut Vec<Action>,
    ) -> Option<DriverStep<P::Outcome>> {
        if self.round >= self.proto.round_count() {
            return Some(self.abort(AbortReason::Internal, core::mem::take(actions)));
        }
        match self.proto.begin(self.round) {
            Err(reason) => return Some(self.abort(reason, core::mem::take(actions))),
            Ok(out) => {
                let frame = |body| Message {
                    protocol: self.kind_tag,
                    sender: self.me.index() as u8,
                    session: self.session,
                    round: self.round,
                    body,
                };
                let (next, prev) = (self.me.next(), self.me.prev());
                match out {
                    Outgoing::Split { to_next, to_prev } => {
                        actions.push(Action::Send {
                            to: next,
                            msg: frame(to_next).encode(),
                        });
                        actions.push(Action::Send {
                            to: prev,
                            msg: frame(to_prev).encode(),
                        });
                    }
                    Outgoing::Same(body) => {
                        // The header names no recipient, so one encoding serves both.
                        let bytes = frame(body).encode();
                        actions.push(Action::Send {
                            to: next,
                            msg: bytes.clone(),
                        });
                        actions.push(Action::Send {
                            to: prev,
                            msg: bytes,
                        });
                    }
                }
            }
        }
        self.deadline = Some(Millis(now.0.saturating_add(self.timeout)));
        None
    }
}
