//! When to try again: exponential backoff with jitter, cut off at the maximum age, and
//! never sooner than a receiver's `Retry-After` asked (within the same limits).
//!
//! Pure functions of the attempt count, the delivery's age and what the receiver asked, so
//! the schedule is unit tested here and made short in integration tests by the `--retry-*`
//! flags.

use std::time::Duration;

/// The retry settings, from `--retry-base-ms`, `--retry-max-delay-ms`, `--retry-max-age-s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure; doubles with each further failure.
    pub base: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
    /// Give up once the delivery is this old (counted from its event's arrival or replay).
    pub max_age: Duration,
}

impl RetryPolicy {
    /// The delay before the next attempt after `failures` failed attempts (≥ 1) of a
    /// delivery that is `age` old, or `None` to give up.
    ///
    /// The delay is `min(base·2^(failures-1), max_delay)`, jittered into its upper half
    /// (`jitter` in `[0, 1)`) so that deliveries failed together do not retry together, and
    /// shortened so that one last attempt happens at the maximum age.
    pub fn next_delay(&self, failures: u32, age: Duration, jitter: f64) -> Option<Duration> {
        if age >= self.max_age {
            return None;
        }
        let doublings = failures.saturating_sub(1).min(40);
        let exponential = self.base.saturating_mul(1u32 << doublings.min(31));
        let delay = exponential.min(self.max_delay);
        let jittered = delay.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        Some(jittered.min(self.max_age - age))
    }

    /// [`next_delay`](Self::next_delay) for a receiver that answered 429 or 503 with
    /// `Retry-After: asked`: a receiver that says when it can take more gets nothing sooner.
    ///
    /// The asked delay is a floor under the normal backoff (a shorter ask keeps the longer
    /// backoff), clamped to `max_delay` so that no receiver can park a delivery for longer
    /// than the operator allows, and capped at the end of the age window: one last attempt
    /// at the maximum age, as without the header. Where the normal backoff gives up, so
    /// does this; without an ask it is the normal backoff.
    pub fn next_delay_after_asked(
        &self,
        failures: u32,
        age: Duration,
        jitter: f64,
        asked: Option<Duration>,
    ) -> Option<Duration> {
        let normal = self.next_delay(failures, age, jitter)?;
        let Some(asked) = asked else {
            return Some(normal);
        };
        let floor = asked.min(self.max_delay);
        Some(normal.max(floor).min(self.max_age.saturating_sub(age)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(1),
        max_delay: Duration::from_secs(3600),
        max_age: Duration::from_secs(7 * 24 * 3600),
    };

    #[test]
    fn doubles_from_the_base_up_to_the_maximum_delay() {
        let delays: Vec<_> = (1..=14)
            .map(|n| POLICY.next_delay(n, Duration::ZERO, 1.0).unwrap().as_secs())
            .collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
        );
        assert_eq!(
            POLICY.next_delay(1000, Duration::ZERO, 1.0),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let low = POLICY.next_delay(4, Duration::ZERO, 0.0).unwrap();
        let high = POLICY.next_delay(4, Duration::ZERO, 0.999).unwrap();
        assert_eq!(low, Duration::from_secs(4));
        assert!(high < Duration::from_secs(8) && high > Duration::from_millis(7990));
        for _ in 0..1000 {
            let delay = POLICY
                .next_delay(3, Duration::ZERO, fastrand::f64())
                .unwrap();
            assert!(delay >= Duration::from_secs(2) && delay <= Duration::from_secs(4));
        }
    }

    #[test]
    fn gives_up_at_the_maximum_age_after_one_last_attempt() {
        let almost = POLICY.max_age - Duration::from_secs(10);
        assert_eq!(
            POLICY.next_delay(20, almost, 1.0),
            Some(Duration::from_secs(10))
        );
        assert_eq!(POLICY.next_delay(20, POLICY.max_age, 0.5), None);
        assert_eq!(POLICY.next_delay(1, POLICY.max_age * 2, 0.5), None);
    }

    #[test]
    fn a_retry_after_is_a_floor_under_the_normal_backoff() {
        let normal = POLICY.next_delay(5, Duration::ZERO, 1.0);
        assert_eq!(normal, Some(Duration::from_secs(16)));
        let asked = |secs| POLICY.next_delay_after_asked(5, Duration::ZERO, 1.0, Some(secs));
        assert_eq!(
            asked(Duration::from_secs(120)),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            asked(Duration::from_secs(3)),
            normal,
            "the longer backoff stays"
        );
        assert_eq!(asked(Duration::ZERO), normal);
        assert_eq!(
            POLICY.next_delay_after_asked(5, Duration::ZERO, 1.0, None),
            normal,
            "no header: the normal backoff"
        );
    }

    #[test]
    fn a_retry_after_is_clamped_to_the_maximum_delay() {
        let asked = Some(Duration::from_secs(86_400));
        assert_eq!(
            POLICY.next_delay_after_asked(1, Duration::ZERO, 0.0, asked),
            Some(POLICY.max_delay)
        );
    }

    #[test]
    fn a_retry_after_stops_at_the_maximum_age_and_gives_up_where_the_backoff_does() {
        let almost = POLICY.max_age - Duration::from_secs(10);
        let asked = Some(Duration::from_secs(600));
        assert_eq!(
            POLICY.next_delay_after_asked(3, almost, 0.0, asked),
            Some(Duration::from_secs(10)),
            "one last attempt at the deadline"
        );
        assert_eq!(
            POLICY.next_delay_after_asked(3, POLICY.max_age, 0.0, asked),
            None
        );
        assert_eq!(
            POLICY.next_delay_after_asked(3, POLICY.max_age * 2, 0.0, asked),
            None
        );
    }

    #[test]
    fn seven_days_take_about_176_attempts_with_the_defaults() {
        let mut age = Duration::ZERO;
        let mut attempts = 1;
        while let Some(delay) = POLICY.next_delay(attempts, age, 1.0) {
            age += delay;
            attempts += 1;
        }
        assert_eq!(age, POLICY.max_age);
        assert!((170..=180).contains(&attempts), "{attempts}");
    }
}
