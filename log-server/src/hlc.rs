//! Hybrid Logical Clock timestamps (SPEC §1.2): the packed `Hlc` value that orders every record,
//! and `HlcClock`, the clock rules a client library uses to stamp events.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::json;

/// An HLC timestamp `(l, c)` stored packed as `l << 16 | c`, so that comparing the packed integers
/// is exactly the HLC order (by `l`, then by `c`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Hlc(u64);

impl Hlc {
    /// Largest physical time: 2^48 - 1 ms.
    pub const MAX_PHYSICAL: u64 = (1 << 48) - 1;
    /// Largest logical counter.
    pub const MAX_LOGICAL: u64 = 0xFFFF;
    pub const MIN: Hlc = Hlc(0);
    pub const MAX: Hlc = Hlc(u64::MAX);

    pub fn new(l: u64, c: u64) -> Result<Hlc, HlcError> {
        if l > Self::MAX_PHYSICAL {
            return Err(HlcError::PhysicalOutOfRange(l));
        }
        if c > Self::MAX_LOGICAL {
            return Err(HlcError::CounterOutOfRange(c));
        }
        Ok(Hlc(l << 16 | c))
    }

    /// Every u64 is a valid packed HLC: the top 48 bits can never exceed the physical range.
    pub const fn from_packed(packed: u64) -> Hlc {
        Hlc(packed)
    }

    pub const fn packed(self) -> u64 {
        self.0
    }

    pub const fn physical(self) -> u64 {
        self.0 >> 16
    }

    pub const fn logical(self) -> u64 {
        self.0 & Self::MAX_LOGICAL
    }
}

/// The canonical JSON form `[l,c]`.
impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&json::to_string(self))
    }
}

/// The canonical `[l, c]` array (not the packed integer, which the reader also accepts).
impl Serialize for Hlc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.physical(), self.logical()).serialize(serializer)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HlcError {
    /// A physical time (from a record or from the physical clock) above 2^48 - 1.
    PhysicalOutOfRange(u64),
    /// A logical counter above 65535.
    CounterOutOfRange(u64),
    /// The clock would have to advance its counter past 65535 within one millisecond.
    CounterOverflow { physical: u64 },
    /// A received timestamp is too far ahead of the local physical clock.
    DriftExceeded {
        remote: Hlc,
        local_physical: u64,
        max_drift_ms: u64,
    },
}

impl fmt::Display for HlcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HlcError::PhysicalOutOfRange(l) => write!(
                f,
                "hlc physical time {l} out of range 0..{}",
                Hlc::MAX_PHYSICAL
            ),
            HlcError::CounterOutOfRange(c) => {
                write!(f, "hlc counter {c} out of range 0..{}", Hlc::MAX_LOGICAL)
            }
            HlcError::CounterOverflow { physical } => write!(
                f,
                "hlc counter overflow: more than {} events at physical time {physical}",
                Hlc::MAX_LOGICAL + 1
            ),
            HlcError::DriftExceeded {
                remote,
                local_physical,
                max_drift_ms,
            } => write!(
                f,
                "remote hlc {remote} is {} ms ahead of the local physical clock {local_physical} \
                 (maximum drift {max_drift_ms} ms)",
                remote.physical().saturating_sub(*local_physical)
            ),
        }
    }
}

impl std::error::Error for HlcError {}

/// The HLC clock rules of Kulkarni et al. 2014 as SPEC §1.2 states them. The physical clock is a
/// closure so tests (and simulations) can drive time by hand.
pub struct HlcClock {
    last: Hlc,
    max_drift_ms: u64,
    physical: Box<dyn FnMut() -> u64 + Send>,
}

impl fmt::Debug for HlcClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HlcClock")
            .field("last", &self.last)
            .field("max_drift_ms", &self.max_drift_ms)
            .finish_non_exhaustive()
    }
}

impl HlcClock {
    pub const DEFAULT_MAX_DRIFT_MS: u64 = 500;

    /// A clock reading physical time (ms since the Unix epoch) from `physical`.
    pub fn new(physical: impl FnMut() -> u64 + Send + 'static) -> HlcClock {
        HlcClock {
            last: Hlc::MIN,
            max_drift_ms: Self::DEFAULT_MAX_DRIFT_MS,
            physical: Box::new(physical),
        }
    }

    /// A clock on the system wall clock.
    pub fn system() -> HlcClock {
        HlcClock::new(system_time_ms)
    }

    pub fn with_max_drift_ms(mut self, max_drift_ms: u64) -> HlcClock {
        self.max_drift_ms = max_drift_ms;
        self
    }

    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// The last timestamp this clock issued (`Hlc::MIN` before the first event).
    pub fn last(&self) -> Hlc {
        self.last
    }

    fn read_physical(&mut self) -> Result<u64, HlcError> {
        let pt = (self.physical)();
        if pt > Hlc::MAX_PHYSICAL {
            return Err(HlcError::PhysicalOutOfRange(pt));
        }
        Ok(pt)
    }

    /// Stamps a local or send event. On error the clock is unchanged.
    pub fn now(&mut self) -> Result<Hlc, HlcError> {
        self.now_with_physical().map(|(hlc, _)| hlc)
    }

    /// [`HlcClock::now`], also returning the physical reading the stamp was made from (a
    /// record's optional `pt`, SPEC §1.3): the HLC alone cannot say it, since `l` may have been
    /// pushed ahead of the local clock by a received stamp.
    pub fn now_with_physical(&mut self) -> Result<(Hlc, u64), HlcError> {
        let pt = self.read_physical()?;
        let (l, c) = (self.last.physical(), self.last.logical());
        let l2 = l.max(pt);
        let c2 = if l2 == l { c + 1 } else { 0 };
        self.advance(l2, c2).map(|hlc| (hlc, pt))
    }

    /// Merges a received timestamp and stamps the receive event. On error the clock is unchanged.
    pub fn update(&mut self, remote: Hlc) -> Result<Hlc, HlcError> {
        let pt = self.read_physical()?;
        let (lm, cm) = (remote.physical(), remote.logical());
        // A sender whose clock runs far ahead would drag every receiver's HLC with it.
        if lm > pt.saturating_add(self.max_drift_ms) {
            return Err(HlcError::DriftExceeded {
                remote,
                local_physical: pt,
                max_drift_ms: self.max_drift_ms,
            });
        }
        let (l, c) = (self.last.physical(), self.last.logical());
        let l2 = l.max(lm).max(pt);
        let c2 = if l2 == l && l2 == lm {
            c.max(cm) + 1
        } else if l2 == l {
            c + 1
        } else if l2 == lm {
            cm + 1
        } else {
            0
        };
        self.advance(l2, c2)
    }

    fn advance(&mut self, l: u64, c: u64) -> Result<Hlc, HlcError> {
        if c > Hlc::MAX_LOGICAL {
            return Err(HlcError::CounterOverflow { physical: l });
        }
        let hlc = Hlc::new(l, c)?;
        self.last = hlc;
        Ok(hlc)
    }
}

/// Milliseconds since the Unix epoch; 0 if the system clock is set before the epoch.
pub fn system_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    fn hlc(l: u64, c: u64) -> Hlc {
        Hlc::new(l, c).unwrap()
    }

    /// A clock whose physical time the test sets by hand.
    fn manual_clock(start: u64) -> (HlcClock, Arc<AtomicU64>) {
        let time = Arc::new(AtomicU64::new(start));
        let t = Arc::clone(&time);
        (HlcClock::new(move || t.load(Ordering::SeqCst)), time)
    }

    #[test]
    fn packing_and_accessors() {
        let h = hlc(1_700_000_000_123, 7);
        assert_eq!(h.packed(), 1_700_000_000_123 << 16 | 7);
        assert_eq!(h.physical(), 1_700_000_000_123);
        assert_eq!(h.logical(), 7);
        assert_eq!(Hlc::from_packed(h.packed()), h);
        assert_eq!(h.to_string(), "[1700000000123,7]");
        assert_eq!(Hlc::MIN, hlc(0, 0));
        assert_eq!(Hlc::MAX, hlc(Hlc::MAX_PHYSICAL, Hlc::MAX_LOGICAL));
        assert_eq!(Hlc::from_packed(u64::MAX).physical(), Hlc::MAX_PHYSICAL);
    }

    #[test]
    fn order_is_physical_then_logical() {
        assert!(hlc(1, 65535) < hlc(2, 0));
        assert!(hlc(2, 0) < hlc(2, 1));
        assert!(Hlc::MIN < hlc(0, 1));
        assert!(hlc(Hlc::MAX_PHYSICAL, 65534) < Hlc::MAX);
    }

    #[test]
    fn new_range_checks() {
        assert_eq!(
            Hlc::new(1 << 48, 0),
            Err(HlcError::PhysicalOutOfRange(1 << 48))
        );
        assert_eq!(Hlc::new(5, 65536), Err(HlcError::CounterOutOfRange(65536)));
        assert_eq!(
            HlcError::CounterOutOfRange(70000).to_string(),
            "hlc counter 70000 out of range 0..65535"
        );
        assert_eq!(
            HlcError::PhysicalOutOfRange(1 << 48).to_string(),
            "hlc physical time 281474976710656 out of range 0..281474976710655"
        );
    }

    #[test]
    fn local_event_takes_physical_time_when_it_advances() {
        let (mut clock, time) = manual_clock(100);
        assert_eq!(clock.now(), Ok(hlc(100, 0)));
        time.store(105, Ordering::SeqCst);
        assert_eq!(clock.now(), Ok(hlc(105, 0)));
    }

    #[test]
    fn local_event_counts_when_physical_time_stalls_or_goes_back() {
        let (mut clock, time) = manual_clock(100);
        assert_eq!(clock.now(), Ok(hlc(100, 0)));
        assert_eq!(clock.now(), Ok(hlc(100, 1)));
        time.store(90, Ordering::SeqCst);
        assert_eq!(clock.now(), Ok(hlc(100, 2)));
        assert_eq!(clock.last(), hlc(100, 2));
    }

    #[test]
    fn counter_overflow_is_an_error_not_a_wrap() {
        let (mut clock, _time) = manual_clock(100);
        for c in 0..=Hlc::MAX_LOGICAL {
            assert_eq!(clock.now(), Ok(hlc(100, c)));
        }
        assert_eq!(
            clock.now(),
            Err(HlcError::CounterOverflow { physical: 100 })
        );
        // The failed event leaves the clock where it was.
        assert_eq!(clock.last(), hlc(100, 65535));
        let (mut clock, _time) = manual_clock(100);
        assert_eq!(
            clock.update(hlc(100, 65535)),
            Err(HlcError::CounterOverflow { physical: 100 })
        );
        assert_eq!(clock.last(), Hlc::MIN);
    }

    #[test]
    fn physical_clock_out_of_range_is_an_error() {
        let (mut clock, _time) = manual_clock(1 << 48);
        assert_eq!(clock.now(), Err(HlcError::PhysicalOutOfRange(1 << 48)));
        assert_eq!(
            clock.update(hlc(5, 0)),
            Err(HlcError::PhysicalOutOfRange(1 << 48))
        );
    }

    #[test]
    fn receive_all_three_equal_takes_max_counter_plus_one() {
        let (mut clock, _time) = manual_clock(100);
        clock.now().unwrap();
        clock.now().unwrap(); // (100, 1)
        assert_eq!(clock.update(hlc(100, 5)), Ok(hlc(100, 6)));
        assert_eq!(clock.update(hlc(100, 2)), Ok(hlc(100, 7)));
    }

    #[test]
    fn receive_local_ahead_increments_local_counter() {
        let (mut clock, time) = manual_clock(200);
        clock.now().unwrap(); // (200, 0)
        time.store(150, Ordering::SeqCst);
        assert_eq!(clock.update(hlc(180, 9)), Ok(hlc(200, 1)));
    }

    #[test]
    fn receive_remote_ahead_takes_remote_counter_plus_one() {
        let (mut clock, _time) = manual_clock(100);
        clock.now().unwrap(); // (100, 0)
        assert_eq!(clock.update(hlc(300, 4)), Ok(hlc(300, 5)));
        // And the next local event continues from the remote's time.
        assert_eq!(clock.now(), Ok(hlc(300, 6)));
    }

    #[test]
    fn receive_physical_ahead_resets_counter() {
        let (mut clock, time) = manual_clock(100);
        clock.now().unwrap();
        time.store(400, Ordering::SeqCst);
        assert_eq!(clock.update(hlc(300, 4)), Ok(hlc(400, 0)));
    }

    #[test]
    fn receive_rejects_remote_beyond_max_drift() {
        let (mut clock, _time) = manual_clock(1000);
        assert_eq!(clock.max_drift_ms(), 500);
        assert_eq!(clock.update(hlc(1500, 0)), Ok(hlc(1500, 1)));
        let err = clock.update(hlc(1501, 0)).unwrap_err();
        assert_eq!(
            err,
            HlcError::DriftExceeded {
                remote: hlc(1501, 0),
                local_physical: 1000,
                max_drift_ms: 500
            }
        );
        assert!(err.to_string().contains("501 ms ahead"), "{err}");
        assert_eq!(clock.last(), hlc(1500, 1));

        let (clock, _time) = manual_clock(1000);
        let mut clock = clock.with_max_drift_ms(10);
        assert!(clock.update(hlc(1011, 0)).is_err());
        assert_eq!(clock.update(hlc(1010, 0)), Ok(hlc(1010, 1)));
    }

    #[test]
    fn happened_before_gives_increasing_timestamps() {
        // n1 sends to n2 whose clock is behind: the receive is still after the send.
        let (mut n1, _t1) = manual_clock(1000);
        let (mut n2, _t2) = manual_clock(900);
        let send = n1.now().unwrap();
        let recv = n2.update(send).unwrap();
        assert!(send < recv);
        let next = n2.now().unwrap();
        assert!(recv < next);
    }

    #[test]
    fn receive_overflow_is_an_error_in_every_branch() {
        // l' == l == lm: max(c, cm) + 1.
        let (mut clock, _time) = manual_clock(100);
        clock.now().unwrap();
        assert_eq!(
            clock.update(hlc(100, 65535)),
            Err(HlcError::CounterOverflow { physical: 100 })
        );
        // l' == l only: c + 1.
        let (mut clock, time) = manual_clock(200);
        for _ in 0..=Hlc::MAX_LOGICAL {
            clock.now().unwrap();
        }
        time.store(150, Ordering::SeqCst);
        assert_eq!(
            clock.update(hlc(100, 0)),
            Err(HlcError::CounterOverflow { physical: 200 })
        );
        assert_eq!(clock.last(), hlc(200, 65535));
        // l' == lm only: cm + 1.
        let (mut clock, _time) = manual_clock(100);
        assert_eq!(
            clock.update(hlc(300, 65535)),
            Err(HlcError::CounterOverflow { physical: 300 })
        );
        assert_eq!(clock.last(), Hlc::MIN);
    }

    #[test]
    fn overflow_clears_once_physical_time_moves_on() {
        let (mut clock, time) = manual_clock(100);
        for _ in 0..=Hlc::MAX_LOGICAL {
            clock.now().unwrap();
        }
        assert!(clock.now().is_err());
        assert!(clock.update(hlc(50, 0)).is_err());
        time.store(101, Ordering::SeqCst);
        assert_eq!(clock.now(), Ok(hlc(101, 0)));
    }

    #[test]
    fn drift_is_measured_against_physical_time_not_the_clock() {
        // The clock got ahead of physical time through an earlier receive; that does not
        // widen the window for the next remote stamp.
        let (mut clock, _time) = manual_clock(1000);
        assert_eq!(clock.update(hlc(1500, 0)), Ok(hlc(1500, 1)));
        assert!(matches!(
            clock.update(hlc(1600, 0)),
            Err(HlcError::DriftExceeded { .. })
        ));
        // A remote stamp behind the clock but ahead of physical time within the bound is fine.
        assert_eq!(clock.update(hlc(1200, 9)), Ok(hlc(1500, 2)));
    }

    #[test]
    fn zero_drift_accepts_only_stamps_up_to_physical_time() {
        let (clock, time) = manual_clock(1000);
        let mut clock = clock.with_max_drift_ms(0);
        assert_eq!(clock.update(hlc(1000, 7)), Ok(hlc(1000, 8)));
        assert!(clock.update(hlc(1001, 0)).is_err());
        time.store(1001, Ordering::SeqCst);
        assert_eq!(clock.update(hlc(1001, 0)), Ok(hlc(1001, 1)));
    }

    #[test]
    fn clocks_are_send() {
        fn send<T: Send>() {}
        send::<HlcClock>();
        send::<Hlc>();
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// One step of a simulated run of three nodes.
        #[derive(Clone, Debug)]
        enum Step {
            /// Real time moves forward (ms).
            Tick(u64),
            /// A node's physical clock is set to real time plus this skew: clocks disagree by
            /// up to 200 ms, and a clock may step back.
            Skew(usize, u64),
            /// A local event.
            Local(usize),
            /// A node sends to another; the message waits in the receiver's inbox.
            Send(usize, usize),
            /// A node receives the oldest message in its inbox, if any.
            Receive(usize),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0..50u64).prop_map(Step::Tick),
                (0..3usize, 0..200u64).prop_map(|(n, s)| Step::Skew(n, s)),
                (0..3usize).prop_map(Step::Local),
                (0..3usize, 0..3usize).prop_map(|(a, b)| Step::Send(a, b)),
                (0..3usize).prop_map(Step::Receive),
            ]
        }

        proptest! {
            /// SPEC §1.2's property: if e happened before f then hlc(e) < hlc(f) — along a
            /// node's own events and from a send to its receive — with physical clocks that
            /// disagree (within the drift bound, so nothing is refused), stall and step back.
            /// And the HLC never runs more than the drift bound ahead of physical time.
            #[test]
            fn happened_before_implies_hlc_order(
                skews in proptest::collection::vec(0..200u64, 3),
                steps in proptest::collection::vec(step(), 1..300),
            ) {
                let mut real = 1_000_000u64;
                let mut skews = skews;
                let times: Vec<Arc<AtomicU64>> =
                    skews.iter().map(|s| Arc::new(AtomicU64::new(real + s))).collect();
                let mut clocks: Vec<HlcClock> = times
                    .iter()
                    .map(|t| {
                        let t = Arc::clone(t);
                        HlcClock::new(move || t.load(Ordering::SeqCst))
                    })
                    .collect();
                let mut last = [Hlc::MIN; 3];
                let mut inbox: Vec<std::collections::VecDeque<Hlc>> = vec![Default::default(); 3];
                let mut event = |clocks: &mut Vec<HlcClock>, n: usize, stamp: Hlc| {
                    prop_assert!(stamp > last[n], "node {n}: {stamp} after {}", last[n]);
                    let pt = times[n].load(Ordering::SeqCst);
                    prop_assert!(stamp.physical() <= pt + clocks[n].max_drift_ms());
                    last[n] = stamp;
                    Ok(())
                };
                for step in steps {
                    match step {
                        Step::Tick(d) => {
                            real += d;
                            for (t, s) in times.iter().zip(&skews) {
                                t.store(real + s, Ordering::SeqCst);
                            }
                        }
                        Step::Skew(n, s) => {
                            skews[n] = s;
                            times[n].store(real + s, Ordering::SeqCst);
                        }
                        Step::Local(n) => {
                            let stamp = clocks[n].now().unwrap();
                            event(&mut clocks, n, stamp)?;
                        }
                        Step::Send(a, b) => {
                            let stamp = clocks[a].now().unwrap();
                            event(&mut clocks, a, stamp)?;
                            inbox[b].push_back(stamp);
                        }
                        Step::Receive(n) => {
                            if let Some(sent) = inbox[n].pop_front() {
                                let stamp = clocks[n].update(sent).unwrap();
                                prop_assert!(sent < stamp, "receive {stamp} not after send {sent}");
                                event(&mut clocks, n, stamp)?;
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn system_clock_is_plausible() {
        let mut clock = HlcClock::system();
        let a = clock.now().unwrap();
        let b = clock.now().unwrap();
        assert!(a < b);
        assert!(a.physical() > 1_600_000_000_000);
    }
}
