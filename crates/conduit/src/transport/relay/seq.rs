//! The sequencing core of a gateway client, without I/O: which gateway frames to deliver, when
//! to ack, which of our frames to keep and resend, and the end-of-input and close requests that
//! must survive a reconnect. Every wire's driver feeds it what arrives and sends what it says.
//!
//! The rules (docs/WIRE.md): the gateway numbers its frames 1, 2, 3, …; a frame at or below the
//! last one delivered is a replay after a resume and is skipped; one that skips ahead is a gap
//! (a broken gateway: the stream fails). Our frames are numbered 1, 2, 3, … across reconnects
//! and kept until the gateway confirms them (`in_ack`, or the `in_seq` of a hello); after every
//! hello the unconfirmed ones are resent, then an end of input or close asked for earlier (both
//! idempotent on the gateway, so resending them is safe and losing them is not).

use std::collections::VecDeque;

use bytes::Bytes;

use super::wire::ACK_EVERY;

/// What to do with a gateway frame (see [`SeqState::accept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Seen before (a replay after a resume): drop it.
    Skip,
    /// The next frame: deliver it.
    Deliver,
    /// Frames are missing between the last delivered and this one.
    Gap {
        /// The sequence number that should have come.
        expected: u64,
        /// The one that came.
        got: u64,
    },
}

/// What to send after a hello (see [`SeqState::on_hello`]), in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resend {
    /// Our frames the gateway does not have yet, oldest first.
    pub frames: Vec<(u64, Bytes)>,
    /// Then end the CLI's input.
    pub end_input: bool,
    /// Then close the session.
    pub close: bool,
}

/// The sequencing state of one client, across all its connections.
#[derive(Debug, Default)]
pub struct SeqState {
    /// The newest gateway frame delivered.
    last_seq: u64,
    /// The newest gateway frame acked (a resume acks everything up to its `after`).
    acked: u64,
    /// The newest sequence number given to one of our frames.
    out_seq: u64,
    /// Our frames the gateway has not confirmed yet, oldest first.
    unconfirmed: VecDeque<(u64, Bytes)>,
    end_input: bool,
    close: bool,
}

impl SeqState {
    /// A fresh state: nothing seen, nothing sent.
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest gateway frame delivered: where a new connection resumes (`after`).
    pub fn resume_after(&self) -> u64 {
        self.last_seq
    }

    /// A gateway frame numbered `seq` arrived. On [`Accept::Deliver`] it counts as delivered.
    pub fn accept(&mut self, seq: u64) -> Accept {
        if seq <= self.last_seq {
            return Accept::Skip;
        }
        let expected = self.last_seq + 1;
        if seq != expected {
            return Accept::Gap { expected, got: seq };
        }
        self.last_seq = seq;
        Accept::Deliver
    }

    /// The ack to send now, if [`ACK_EVERY`] frames went unacked; counts it as sent.
    pub fn take_ack(&mut self) -> Option<u64> {
        if self.last_seq - self.acked >= ACK_EVERY {
            self.acked = self.last_seq;
            Some(self.acked)
        } else {
            None
        }
    }

    /// Whether [`take_ack`](Self::take_ack) would give an ack.
    pub fn ack_due(&self) -> bool {
        self.last_seq - self.acked >= ACK_EVERY
    }

    /// Whether any delivered frame is not acked yet.
    pub fn unacked(&self) -> bool {
        self.last_seq > self.acked
    }

    /// The ack of everything delivered, if anything is unacked (however little): what a quiet
    /// stream sends so that the gateway can let go of the frames it keeps for a resume.
    pub fn take_idle_ack(&mut self) -> Option<u64> {
        self.unacked().then(|| {
            self.acked = self.last_seq;
            self.acked
        })
    }

    /// Number one of our frames and keep it until confirmed; returns its sequence number.
    pub fn push(&mut self, frame: Bytes) -> u64 {
        self.out_seq += 1;
        self.unconfirmed.push_back((self.out_seq, frame));
        self.out_seq
    }

    /// The gateway has our frames up to `seq`.
    pub fn confirm(&mut self, seq: u64) {
        while self.unconfirmed.front().is_some_and(|(s, _)| *s <= seq) {
            self.unconfirmed.pop_front();
        }
    }

    /// Our frames not confirmed yet, oldest first.
    pub fn unconfirmed(&self) -> impl Iterator<Item = &(u64, Bytes)> {
        self.unconfirmed.iter()
    }

    /// End of input was asked for. True the first time.
    pub fn end_input(&mut self) -> bool {
        !std::mem::replace(&mut self.end_input, true)
    }

    /// A close was asked for. True the first time.
    pub fn close(&mut self) -> bool {
        !std::mem::replace(&mut self.close, true)
    }

    /// A new connection opened (resuming after [`resume_after`](Self::resume_after)): the
    /// resume acks everything delivered so far.
    pub fn on_connect(&mut self) {
        self.acked = self.last_seq;
    }

    /// The gateway's hello: it has our frames up to `in_seq`. What to send again.
    pub fn on_hello(&mut self, in_seq: u64) -> Resend {
        self.confirm(in_seq);
        Resend {
            frames: self.unconfirmed.iter().cloned().collect(),
            end_input: self.end_input,
            close: self.close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_are_delivered_once_in_order() {
        let mut s = SeqState::new();
        assert_eq!(s.accept(1), Accept::Deliver);
        assert_eq!(s.accept(1), Accept::Skip);
        assert_eq!(
            s.accept(3),
            Accept::Gap {
                expected: 2,
                got: 3
            }
        );
        assert_eq!(s.accept(2), Accept::Deliver);
        assert_eq!(s.resume_after(), 2);
    }

    #[test]
    fn acks_every_ack_every_frames_and_a_resume_counts_as_one() {
        let mut s = SeqState::new();
        for seq in 1..ACK_EVERY {
            s.accept(seq);
            assert_eq!(s.take_ack(), None);
        }
        s.accept(ACK_EVERY);
        assert_eq!(s.take_ack(), Some(ACK_EVERY));
        for seq in ACK_EVERY + 1..ACK_EVERY + 5 {
            s.accept(seq);
        }
        s.on_connect();
        assert!(!s.ack_due());
    }

    #[test]
    fn an_idle_ack_covers_the_few_unacked_frames_once() {
        let mut s = SeqState::new();
        assert_eq!(s.take_idle_ack(), None);
        s.accept(1);
        s.accept(2);
        assert_eq!(s.take_ack(), None);
        assert!(s.unacked());
        assert_eq!(s.take_idle_ack(), Some(2));
        assert!(!s.unacked());
        assert_eq!(s.take_idle_ack(), None);
        // The regular ack counts from the idle one.
        for seq in 3..2 + ACK_EVERY {
            s.accept(seq);
        }
        assert_eq!(s.take_ack(), None);
        s.accept(2 + ACK_EVERY);
        assert_eq!(s.take_ack(), Some(2 + ACK_EVERY));
    }

    #[test]
    fn a_hello_resends_the_unconfirmed_then_end_and_close() {
        let mut s = SeqState::new();
        for f in ["a", "b", "c"] {
            s.push(Bytes::from(f));
        }
        s.confirm(1);
        assert!(s.end_input());
        assert!(!s.end_input());
        let r = s.on_hello(2);
        assert_eq!(r.frames, vec![(3, Bytes::from("c"))]);
        assert!(r.end_input && !r.close);
        // End of input survives every reconnect.
        assert!(s.on_hello(3).end_input);
    }

    /// The gateway, modelled as the real one behaves: it numbers its frames, replays after the
    /// resume point, accepts client frames in order (skipping duplicates, refusing gaps) and
    /// treats end of input as idempotent.
    #[derive(Debug, Default)]
    struct Gateway {
        produced: u64,
        in_seq: u64,
        received: Vec<u64>,
        end_input_seen: u32,
        cli_eof: u32,
        frames_after_eof: bool,
    }

    /// One message on a connection.
    #[derive(Debug, Clone)]
    enum Up {
        Frame(u64),
        Ack,
        EndInput,
    }
    #[derive(Debug, Clone)]
    enum Down {
        Hello(u64),
        Frame(u64),
        InAck(u64),
    }

    impl Gateway {
        fn take(&mut self, m: Up) -> bool {
            match m {
                Up::Frame(seq) if seq <= self.in_seq => true,
                Up::Frame(seq) if seq == self.in_seq + 1 => {
                    if self.cli_eof > 0 {
                        self.frames_after_eof = true;
                    }
                    self.in_seq = seq;
                    self.received.push(seq);
                    true
                }
                Up::Frame(_) => false, // A gap: the gateway closes the connection.
                Up::Ack => true,
                Up::EndInput => {
                    self.end_input_seen += 1;
                    if self.cli_eof == 0 {
                        self.cli_eof = 1;
                    }
                    true
                }
            }
        }
    }

    /// What a test run does at each step.
    #[derive(Debug, Clone)]
    enum Step {
        /// The client sends a frame.
        Send,
        /// The client asks for end of input.
        EndInput,
        /// The gateway produces a frame.
        Produce,
        /// The next message in flight (up, or down) arrives.
        DeliverUp,
        DeliverDown,
        /// The connection drops, losing what is in flight; the client reconnects.
        Cut,
        /// A message in flight is duplicated (a resend racing the original).
        DuplicateUp,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Send),
            1 => Just(Step::EndInput),
            3 => Just(Step::Produce),
            4 => Just(Step::DeliverUp),
            4 => Just(Step::DeliverDown),
            1 => Just(Step::Cut),
            1 => Just(Step::DuplicateUp),
        ]
    }

    struct World {
        client: SeqState,
        gateway: Gateway,
        up: VecDeque<Up>,
        down: VecDeque<Down>,
        delivered: Vec<u64>,
        sent: u64,
        input_ended: bool,
        /// Whether this connection's hello arrived: like the driver, the client sends nothing
        /// on a connection before (what the sending half asks meanwhile waits).
        greeted: bool,
        waiting: VecDeque<Step>,
    }

    impl World {
        fn new() -> Self {
            let mut w = Self {
                client: SeqState::new(),
                gateway: Gateway::default(),
                up: VecDeque::new(),
                down: VecDeque::new(),
                delivered: Vec::new(),
                sent: 0,
                input_ended: false,
                greeted: false,
                waiting: VecDeque::new(),
            };
            w.connect();
            w
        }

        /// A new connection: the client resumes, the gateway says hello and replays.
        fn connect(&mut self) {
            self.up.clear();
            self.down.clear();
            self.greeted = false;
            let after = self.client.resume_after();
            self.client.on_connect();
            self.down.push_back(Down::Hello(self.gateway.in_seq));
            for seq in after + 1..=self.gateway.produced {
                self.down.push_back(Down::Frame(seq));
            }
        }

        fn client_takes(&mut self, m: Down) {
            match m {
                Down::Hello(in_seq) => {
                    let r = self.client.on_hello(in_seq);
                    self.up.extend(r.frames.iter().map(|(s, _)| Up::Frame(*s)));
                    if r.end_input {
                        self.up.push_back(Up::EndInput);
                    }
                    self.greeted = true;
                    while let Some(step) = self.waiting.pop_front() {
                        self.run(step);
                    }
                }
                Down::Frame(seq) => match self.client.accept(seq) {
                    Accept::Deliver => {
                        self.delivered.push(seq);
                        if let Some(n) = self.client.take_ack() {
                            assert_eq!(n, seq);
                            self.up.push_back(Up::Ack);
                        }
                    }
                    Accept::Skip => {}
                    Accept::Gap { expected, got } => panic!("gap {expected} {got}"),
                },
                Down::InAck(n) => self.client.confirm(n),
            }
        }

        fn run(&mut self, step: Step) {
            if matches!(step, Step::Send | Step::EndInput) && !self.greeted {
                self.waiting.push_back(step);
                return;
            }
            match step {
                Step::Send if !self.input_ended => {
                    self.sent += 1;
                    let seq = self.client.push(Bytes::new());
                    assert_eq!(seq, self.sent);
                    self.up.push_back(Up::Frame(seq));
                }
                Step::Send => {}
                Step::EndInput => {
                    self.input_ended = true;
                    if self.client.end_input() {
                        self.up.push_back(Up::EndInput);
                    }
                }
                Step::Produce => {
                    self.gateway.produced += 1;
                    self.down.push_back(Down::Frame(self.gateway.produced));
                }
                Step::DeliverUp => {
                    if let Some(m) = self.up.pop_front() {
                        if !self.gateway.take(m) {
                            self.connect();
                        } else {
                            self.down.push_back(Down::InAck(self.gateway.in_seq));
                        }
                    }
                }
                Step::DeliverDown => {
                    if let Some(m) = self.down.pop_front() {
                        self.client_takes(m);
                    }
                }
                Step::Cut => self.connect(),
                Step::DuplicateUp => {
                    if let Some(m) = self.up.front().cloned() {
                        self.up.push_front(m);
                    }
                }
            }
        }

        /// Let everything in flight arrive, with no more cuts.
        fn settle(&mut self) {
            while !self.up.is_empty() || !self.down.is_empty() {
                self.run(Step::DeliverUp);
                self.run(Step::DeliverDown);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever drops, duplicates and reconnects happen, no frame is lost, repeated or
        /// reordered either way, and an end of input reaches the CLI exactly once, after every
        /// frame sent before it.
        #[test]
        fn nothing_is_lost_repeated_or_reordered(steps in proptest::collection::vec(step(), 0..200)) {
            let mut w = World::new();
            for s in steps {
                w.run(s);
            }
            w.settle();
            let want: Vec<u64> = (1..=w.gateway.produced).collect();
            prop_assert_eq!(&w.delivered, &want);
            let sent: Vec<u64> = (1..=w.sent).collect();
            prop_assert_eq!(&w.gateway.received, &sent);
            prop_assert_eq!(w.gateway.cli_eof, u32::from(w.input_ended));
            prop_assert!(!w.gateway.frames_after_eof);
            prop_assert_eq!(w.client.unconfirmed().count(), 0);
        }
    }
}
