//! Receiver health: per destination, what its attempts looked like over the last 5 minutes
//! and the last hour, graded against the provider's own standards
//! (../shared/seeds/receiving-messages-via-webhook.md): median latency not above 250 ms, less
//! than 1 % of answers over 1 s, a 200 within 5 s.
//!
//! Kept in memory, per node, in one-minute buckets (60 of them per destination, each a
//! count of attempts, of 200s, of answers over 1 s, and a latency histogram), so recording
//! an attempt is a few additions and the figures are exact counts with percentiles
//! estimated to the histogram's bucket bounds.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::{redact_query, DestinationId};

/// Upper bounds (ms) of the latency histogram's buckets; the last bucket is everything above.
const BOUNDS_MS: [u64; 16] = [
    10, 25, 50, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000,
];

/// Minutes kept per destination: the longest window.
const MINUTES: u64 = 60;

/// Destinations tracked at most; beyond, the ones idle longest are forgotten.
const MAX_TRACKED: usize = 10_000;

/// Attempts a 5-minute window needs before it is graded below `ok`.
pub const MIN_GRADED_ATTEMPTS: u64 = 20;

/// One minute of one destination's attempts.
#[derive(Debug, Clone, Default)]
struct Minute {
    /// Minutes since the epoch.
    at: u64,
    attempts: u64,
    delivered: u64,
    over_1s: u64,
    latency: [u64; BOUNDS_MS.len() + 1],
}

/// The last hour of one destination.
#[derive(Debug, Default)]
struct Track {
    /// A URL of the destination, as it may be shown (query masked).
    url: String,
    minutes: VecDeque<Minute>,
    /// Since when every answer has been a failure (ms since the epoch); `None` after a 200.
    failing_since: Option<i64>,
    /// The grade last computed, and when (ms since the epoch): regraded at most every second.
    grade: Grade,
    graded_at: i64,
}

/// What one recorded attempt changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Since when the destination has answered nothing but failures (`None` after a 200).
    pub failing_since: Option<i64>,
    /// The grade, when it changed between `ok` and not `ok` with this attempt.
    pub regraded: Option<Grade>,
}

/// What a window's attempts looked like.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowFigures {
    /// Attempts made.
    pub attempts: u64,
    /// Of which answered 200.
    pub delivered: u64,
    /// Share answered 200 (1.0 with no attempts).
    pub success_rate: f64,
    /// Latency percentiles, in ms (the upper bound of the histogram bucket they fall in;
    /// `None` with no attempts).
    pub p50_ms: Option<u64>,
    /// 90th percentile, as `p50_ms`.
    pub p90_ms: Option<u64>,
    /// 99th percentile, as `p50_ms`.
    pub p99_ms: Option<u64>,
    /// Share of attempts that took longer than 1 s.
    pub over_1s_share: f64,
}

/// How a receiver measures up to the provider's standards over the last 5 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Grade {
    /// Meets them (or too few attempts to say otherwise).
    #[default]
    Ok,
    /// Misses one: median over 250 ms, 1 % or more over 1 s, or 1 % or more not answered
    /// 200 (within the 5 s limit).
    Degraded,
    /// Fewer than half of its attempts answered 200.
    Failing,
}

impl Grade {
    /// The grade as the admin API and `/metrics` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Failing => "failing",
        }
    }

    /// Every grade, for labelled series.
    pub const ALL: [Grade; 3] = [Grade::Ok, Grade::Degraded, Grade::Failing];
}

/// One destination's figures and grade.
#[derive(Debug, Clone)]
pub struct DestinationHealth {
    /// Which destination.
    pub id: DestinationId,
    /// A URL of it, query masked.
    pub url: String,
    /// The last 5 minutes.
    pub five_minutes: WindowFigures,
    /// The last hour.
    pub hour: WindowFigures,
    /// Graded over the last 5 minutes.
    pub grade: Grade,
}

/// The health of every destination this node attempted in the last hour.
#[derive(Default)]
pub struct Health {
    state: Mutex<State>,
}

/// The tracks, and a memo of the destination of each URL seen (parsing and hashing a URL on
/// every attempt would cost more than the rest of the bookkeeping).
#[derive(Default)]
struct State {
    tracks: HashMap<DestinationId, Track>,
    ids: HashMap<String, DestinationId>,
}

impl State {
    /// The destination of `url`, from the memo.
    fn id_of(&mut self, url: &str) -> Option<DestinationId> {
        if let Some(id) = self.ids.get(url) {
            return Some(id.clone());
        }
        let id = DestinationId::of(url)?;
        if self.ids.len() >= MAX_TRACKED {
            self.ids.clear();
        }
        self.ids.insert(url.to_owned(), id.clone());
        Some(id)
    }
}

impl Health {
    /// The destination `url` belongs to (memoised: the engine asks before every attempt).
    pub fn id_of(&self, url: &str) -> Option<DestinationId> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .id_of(url)
    }

    /// Counts one attempt to destination `id` (at `url`, shown as its URL when the
    /// destination is new) that took `took`, answered 200 or not, at `now_ms`; returns since
    /// when it has answered nothing but failures (`None` when this attempt, or one since
    /// the last failure streak began, was a 200), and a grade change.
    ///
    /// The caller has the id already ([`Health::id_of`], asked before the attempt), so the
    /// URL is not looked up again on the hot path.
    pub fn record(
        &self,
        (id, url): (&DestinationId, &str),
        took: Duration,
        delivered: bool,
        now_ms: i64,
    ) -> Recorded {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let minute = minute_of(now_ms);
        let tracks = &mut state.tracks;
        if !tracks.contains_key(id) {
            if tracks.len() >= MAX_TRACKED {
                forget_idle(tracks, minute);
            }
            let track = Track {
                url: redact_query(url).into_owned(),
                minutes: VecDeque::new(),
                failing_since: None,
                grade: Grade::Ok,
                graded_at: now_ms,
            };
            tracks.insert(id.clone(), track);
        }
        let Some(track) = tracks.get_mut(id) else {
            return Recorded::default();
        };
        track.failing_since = match (delivered, track.failing_since) {
            (true, _) => None,
            (false, since) => Some(since.unwrap_or(now_ms)),
        };
        let failing_since = track.failing_since;
        if track.minutes.back().is_none_or(|last| last.at != minute) {
            track.minutes.push_back(Minute {
                at: minute,
                ..Minute::default()
            });
            while track
                .minutes
                .front()
                .is_some_and(|first| first.at + MINUTES <= minute)
            {
                track.minutes.pop_front();
            }
        }
        let Some(current) = track.minutes.back_mut() else {
            return Recorded {
                failing_since,
                regraded: None,
            };
        };
        let ms = took.as_millis() as u64;
        current.attempts += 1;
        current.delivered += u64::from(delivered);
        current.over_1s += u64::from(ms > 1000);
        let bucket = BOUNDS_MS.iter().position(|&bound| ms <= bound);
        current.latency[bucket.unwrap_or(BOUNDS_MS.len())] += 1;
        Recorded {
            failing_since,
            regraded: regrade(track, minute, now_ms),
        }
    }

    /// The figures of one destination, if it was attempted in the last hour.
    pub fn of(&self, id: &DestinationId, now_ms: i64) -> Option<DestinationHealth> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let track = state.tracks.get(id)?;
        figures(id, track, minute_of(now_ms)).filter(|h| h.hour.attempts > 0)
    }

    /// Every destination attempted in the last hour.
    pub fn all(&self, now_ms: i64) -> Vec<DestinationHealth> {
        let minute = minute_of(now_ms);
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = state
            .tracks
            .iter()
            .filter_map(|(id, track)| figures(id, track, minute))
            .filter(|h| h.hour.attempts > 0)
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

/// Regrades `track` if its grade is over a second old; the new grade when it crossed
/// between `ok` and not `ok` (degraded and failing are one side: a move between them is not
/// a change an operator is told about).
fn regrade(track: &mut Track, minute: u64, now_ms: i64) -> Option<Grade> {
    if now_ms - track.graded_at < 1000 {
        return None;
    }
    track.graded_at = now_ms;
    let grade = grade(&window_of(track, minute, 5));
    let crossed = (grade == Grade::Ok) != (track.grade == Grade::Ok);
    track.grade = grade;
    crossed.then_some(grade)
}

fn minute_of(now_ms: i64) -> u64 {
    (now_ms.max(0) as u64) / 60_000
}

/// Drops the destinations with no attempt in the last hour (and, if that is not enough, the
/// idlest tenth), so tracking stays bounded.
fn forget_idle(tracks: &mut HashMap<DestinationId, Track>, minute: u64) {
    let last = |track: &Track| track.minutes.back().map_or(0, |m| m.at);
    tracks.retain(|_, track| last(track) + MINUTES > minute);
    if tracks.len() >= MAX_TRACKED {
        let mut ages: Vec<u64> = tracks.values().map(last).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() / 10];
        tracks.retain(|_, track| last(track) > cut);
    }
}

/// The figures of the last `minutes` minutes of `track`.
fn window_of(track: &Track, minute: u64, minutes: u64) -> WindowFigures {
    let mut sum = Minute::default();
    for m in track.minutes.iter().filter(|m| m.at + minutes > minute) {
        sum.attempts += m.attempts;
        sum.delivered += m.delivered;
        sum.over_1s += m.over_1s;
        for (total, count) in sum.latency.iter_mut().zip(m.latency) {
            *total += count;
        }
    }
    summarize(&sum)
}

fn figures(id: &DestinationId, track: &Track, minute: u64) -> Option<DestinationHealth> {
    let five_minutes = window_of(track, minute, 5);
    let hour = window_of(track, minute, MINUTES);
    Some(DestinationHealth {
        id: id.clone(),
        url: track.url.clone(),
        grade: grade(&five_minutes),
        five_minutes,
        hour,
    })
}

fn summarize(sum: &Minute) -> WindowFigures {
    let share = |part: u64| {
        if sum.attempts == 0 {
            0.0
        } else {
            part as f64 / sum.attempts as f64
        }
    };
    let percentile = |q: f64| -> Option<u64> {
        if sum.attempts == 0 {
            return None;
        }
        let rank = (q * sum.attempts as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in sum.latency.iter().enumerate() {
            seen += count;
            if seen >= rank {
                // Above the last bound: the hard limit of an attempt.
                return Some(BOUNDS_MS.get(i).copied().unwrap_or(5000));
            }
        }
        None
    };
    WindowFigures {
        attempts: sum.attempts,
        delivered: sum.delivered,
        success_rate: if sum.attempts == 0 {
            1.0
        } else {
            share(sum.delivered)
        },
        p50_ms: percentile(0.5),
        p90_ms: percentile(0.9),
        p99_ms: percentile(0.99),
        over_1s_share: share(sum.over_1s),
    }
}

/// The grade of a 5-minute window (see [`Grade`]).
pub fn grade(window: &WindowFigures) -> Grade {
    if window.attempts < MIN_GRADED_ATTEMPTS {
        return Grade::Ok;
    }
    if window.success_rate < 0.5 {
        return Grade::Failing;
    }
    let slow_median = window.p50_ms.is_some_and(|p50| p50 > 250);
    if slow_median || window.over_1s_share >= 0.01 || window.success_rate <= 0.99 {
        return Grade::Degraded;
    }
    Grade::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://example.com/hook?token=s3cret";

    fn id() -> DestinationId {
        DestinationId::of(URL).unwrap()
    }

    #[test]
    fn a_fast_receiver_is_ok_and_its_figures_are_counted() {
        let health = Health::default();
        for _ in 0..30 {
            health.record((&id(), URL), Duration::from_millis(40), true, 0);
        }
        let figures = health.of(&id(), 1_000).unwrap();
        assert_eq!(figures.five_minutes.attempts, 30);
        assert_eq!(figures.five_minutes.success_rate, 1.0);
        assert_eq!(figures.five_minutes.p50_ms, Some(50));
        assert_eq!(figures.grade, Grade::Ok);
        assert!(!figures.url.contains("s3cret"), "{}", figures.url);
    }

    #[test]
    fn each_missed_standard_degrades_and_half_failing_fails() {
        let graded = |records: &[(u64, bool)]| {
            let health = Health::default();
            for &(ms, ok) in records {
                health.record((&id(), URL), Duration::from_millis(ms), ok, 0);
            }
            health.of(&id(), 0).unwrap().grade
        };
        let slow: Vec<_> = (0..20).map(|_| (300, true)).collect();
        assert_eq!(graded(&slow), Grade::Degraded, "median over 250 ms");
        let mut spiky: Vec<_> = (0..99).map(|_| (20, true)).collect();
        spiky.push((1500, true));
        assert_eq!(graded(&spiky), Grade::Degraded, "1 % over 1 s");
        let mut failing: Vec<_> = (0..10).map(|_| (20, true)).collect();
        failing.extend((0..11).map(|_| (20, false)));
        assert_eq!(graded(&failing), Grade::Failing);
        let few: Vec<_> = (0..19).map(|_| (3000, false)).collect();
        assert_eq!(graded(&few), Grade::Ok, "too few attempts to grade");
    }

    #[test]
    fn the_five_minute_window_slides_and_the_hour_keeps_more() {
        let health = Health::default();
        for _ in 0..25 {
            health.record((&id(), URL), Duration::from_millis(600), true, 0);
        }
        let ten_minutes_later = 10 * 60_000;
        for _ in 0..5 {
            health.record(
                (&id(), URL),
                Duration::from_millis(20),
                true,
                ten_minutes_later,
            );
        }
        let figures = health.of(&id(), ten_minutes_later).unwrap();
        assert_eq!(figures.five_minutes.attempts, 5);
        assert_eq!(figures.hour.attempts, 30);
        assert_eq!(figures.grade, Grade::Ok);
        assert!(
            health.of(&id(), 2 * 3_600_000).is_none(),
            "forgotten after an hour"
        );
    }
}
