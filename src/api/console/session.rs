//! The console's sessions: who logged in with the admin token, held in memory only, and the
//! throttle on failed logins.
//!
//! A session is a random id (32 bytes, hex) that the browser keeps in an HttpOnly cookie,
//! and a CSRF token of its own that the page's script reads from `GET /console/session` and
//! sends back on every write. Sessions are bounded (at most [`MAX_SESSIONS`]; a new login
//! beyond that ends the session unused for the longest) and end after [`IDLE`] without a
//! request or [`LIFETIME`] after the login, whichever comes first. A restart ends them all:
//! the operator logs in again, and no session secret ever reaches the database.
//!
//! The map is keyed by the SHA-256 of the id, so looking a presented cookie up does not
//! compare the secret itself byte by byte.
//!
//! [`LoginThrottle`] bounds how fast wrong admin tokens can be tried at the login.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::domain::{random_hex, KeyHash};

/// Sessions open at once, at most: memory stays bounded whatever logs in.
pub const MAX_SESSIONS: usize = 1000;
/// A session ends this long after its login, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(3600);
/// Random bytes in a session id and in a CSRF token.
const SECRET_BYTES: usize = 32;

/// Failed logins allowed in a burst; then one more every [`LOGIN_REFILL`].
pub const LOGIN_BURST: u32 = 10;
/// How often one more failed login is allowed once the burst is spent (10 a minute).
pub const LOGIN_REFILL: Duration = Duration::from_secs(6);

/// Bounds how fast wrong tokens can be tried at `POST /console/login` (an operator may set a
/// guessable `--admin-token`): a token bucket over failed logins, server-wide, since client
/// addresses behind a proxy say little. A successful login spends nothing; while the bucket
/// is empty the login answers 429 (the Bearer API is unaffected).
#[derive(Debug)]
pub struct LoginThrottle {
    /// Failed logins still allowed, and when the bucket was last refilled.
    bucket: Mutex<(u32, Instant)>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            bucket: Mutex::new((LOGIN_BURST, Instant::now())),
        }
    }
}

impl LoginThrottle {
    /// `Err(seconds to wait)` while no failed login may be tried; `Ok` otherwise.
    pub fn check(&self) -> Result<(), u64> {
        self.check_at(Instant::now())
    }

    /// Spends one allowance for a failed login.
    pub fn failed(&self) {
        self.failed_at(Instant::now());
    }

    fn refill(bucket: &mut (u32, Instant), now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.1);
        let earned = (elapsed.as_secs_f64() / LOGIN_REFILL.as_secs_f64()) as u32;
        if earned > 0 {
            bucket.0 = (bucket.0 + earned).min(LOGIN_BURST);
            bucket.1 += LOGIN_REFILL * earned;
        }
        if bucket.0 == LOGIN_BURST {
            bucket.1 = now;
        }
    }

    fn check_at(&self, now: Instant) -> Result<(), u64> {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        Self::refill(&mut bucket, now);
        if bucket.0 > 0 {
            return Ok(());
        }
        let next = (bucket.1 + LOGIN_REFILL).saturating_duration_since(now);
        Err(next.as_secs().max(1))
    }

    fn failed_at(&self, now: Instant) {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        Self::refill(&mut bucket, now);
        bucket.0 = bucket.0.saturating_sub(1);
    }
}

/// The console's open sessions, shared by every request.
#[derive(Debug, Default)]
pub struct Sessions {
    /// By `KeyHash::of(session id)`.
    open: Mutex<HashMap<String, Session>>,
    /// How fast wrong tokens may be tried.
    pub logins: LoginThrottle,
}

/// One logged-in browser.
#[derive(Debug, Clone)]
struct Session {
    /// The token its writes must carry in `X-CSRF-Token`.
    csrf: String,
    /// When it logged in.
    created: Instant,
    /// Its latest request.
    seen: Instant,
}

impl Session {
    fn alive(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) < LIFETIME
            && now.saturating_duration_since(self.seen) < IDLE
    }
}

/// A session just opened: the id for the cookie and the CSRF token for the page.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The cookie's value.
    pub id: String,
    /// What writes send in `X-CSRF-Token`.
    pub csrf: String,
}

impl Sessions {
    /// No session yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a session after a successful login.
    pub fn open(&self) -> Issued {
        self.open_at(Instant::now())
    }

    /// The CSRF token of the live session `id` names (and marks it used now); `None` for
    /// an unknown, ended or expired one.
    pub fn csrf_of(&self, id: &str) -> Option<String> {
        self.csrf_at(id, Instant::now())
    }

    /// Ends the session `id` names (logout).
    pub fn close(&self, id: &str) {
        self.lock().remove(KeyHash::of(id).as_str());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_at(&self, now: Instant) -> Issued {
        let issued = Issued {
            id: random_hex(SECRET_BYTES),
            csrf: random_hex(SECRET_BYTES),
        };
        let mut open = self.lock();
        open.retain(|_, session| session.alive(now));
        if open.len() >= MAX_SESSIONS {
            let stalest = open
                .iter()
                .min_by_key(|(_, session)| session.seen)
                .map(|(key, _)| key.clone());
            if let Some(key) = stalest {
                open.remove(&key);
            }
        }
        let session = Session {
            csrf: issued.csrf.clone(),
            created: now,
            seen: now,
        };
        open.insert(KeyHash::of(&issued.id).as_str().to_owned(), session);
        issued
    }

    fn csrf_at(&self, id: &str, now: Instant) -> Option<String> {
        let key = KeyHash::of(id);
        let mut open = self.lock();
        let session = open.get_mut(key.as_str())?;
        if !session.alive(now) {
            open.remove(key.as_str());
            return None;
        }
        session.seen = now;
        Some(session.csrf.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_knows_its_csrf_token_until_closed() {
        let sessions = Sessions::new();
        let issued = sessions.open();
        assert_eq!(issued.id.len(), 64);
        assert_ne!(issued.id, issued.csrf);
        assert_eq!(sessions.csrf_of(&issued.id), Some(issued.csrf.clone()));
        assert_eq!(sessions.csrf_of("not a session"), None);
        sessions.close(&issued.id);
        assert_eq!(sessions.csrf_of(&issued.id), None);
    }

    #[test]
    fn sessions_end_when_idle_and_after_their_lifetime() {
        let sessions = Sessions::new();
        let start = Instant::now();
        let idle = sessions.open_at(start);
        assert!(sessions.csrf_at(&idle.id, start + IDLE / 2).is_some());
        assert!(sessions
            .csrf_at(&idle.id, start + IDLE / 2 + IDLE)
            .is_none());

        let busy = sessions.open_at(start);
        let mut now = start;
        while now < start + LIFETIME - IDLE {
            now += IDLE / 2;
            assert!(sessions.csrf_at(&busy.id, now).is_some());
        }
        assert!(sessions.csrf_at(&busy.id, start + LIFETIME).is_none());
    }

    #[test]
    fn failed_logins_are_throttled_after_a_burst_and_allowed_again_over_time() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..LOGIN_BURST {
            assert!(throttle.check_at(start).is_ok());
            throttle.failed_at(start);
        }
        let wait = throttle.check_at(start).unwrap_err();
        assert_eq!(wait, LOGIN_REFILL.as_secs());
        assert!(throttle.check_at(start + LOGIN_REFILL / 2).is_err());
        assert!(throttle.check_at(start + LOGIN_REFILL).is_ok());
        throttle.failed_at(start + LOGIN_REFILL);
        assert!(throttle.check_at(start + LOGIN_REFILL).is_err());
        // A long quiet spell refills the whole burst, no more.
        let later = start + LOGIN_REFILL * 100;
        for _ in 0..LOGIN_BURST {
            assert!(throttle.check_at(later).is_ok());
            throttle.failed_at(later);
        }
        assert!(throttle.check_at(later).is_err());
    }

    #[test]
    fn a_full_map_drops_the_stalest_session() {
        let sessions = Sessions::new();
        let start = Instant::now();
        let first = sessions.open_at(start);
        let ids: Vec<Issued> = (1..MAX_SESSIONS)
            .map(|n| sessions.open_at(start + Duration::from_millis(n as u64)))
            .collect();
        assert_eq!(sessions.len(), MAX_SESSIONS);
        let later = start + Duration::from_secs(10);
        let newest = sessions.open_at(later);
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.csrf_at(&first.id, later).is_none());
        assert!(sessions.csrf_at(&ids[0].id, later).is_some());
        assert!(sessions.csrf_at(&newest.id, later).is_some());
    }
}
