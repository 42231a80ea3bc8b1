//! A destination's lifecycle after each attempt: a probe's 200 resumes a paused destination;
//! a failure after nothing but failures for `--pause-after-s` pauses it; a grade crossing
//! between `ok` and not `ok` degrades or recovers it. Every change is logged at warn,
//! counted, and told to the partners whose channels route there (`notify`).

use std::time::Duration;

use serde_json::json;

use super::feed::Feed;
use super::health::{Grade, Recorded};
use super::notify::destination_changed;
use super::pause::Pauses;
use crate::domain::{redact_query, DestinationId};
use crate::metrics::{Metrics, StateChange};
use crate::store::{DestinationPause, PauseReason, Store};

/// What the lifecycle needs of the engine.
pub struct Lifecycle<'a> {
    /// Where pauses and operational events are written.
    pub store: &'a dyn Store,
    /// Counts the changes.
    pub metrics: &'a Metrics,
    /// The paused destinations.
    pub pauses: &'a Pauses,
    /// Tells each change to the live stream.
    pub feed: &'a Feed,
    /// Pause after nothing but failures this long (`None`: never).
    pub pause_after: Option<Duration>,
    /// One probe per paused destination this often.
    pub probe_interval: Duration,
}

/// What one attempt showed.
pub struct Attempted {
    /// It was a paused destination's probe.
    pub probing: bool,
    /// It was answered 200.
    pub delivered: bool,
    /// What the health record made of it.
    pub recorded: Recorded,
}

/// Acts on what an attempt to destination `id` (at `url`) showed.
pub async fn after_attempt(ctx: Lifecycle<'_>, (id, url): (&DestinationId, &str), seen: Attempted) {
    let url = redact_query(url).into_owned();
    if seen.probing && seen.delivered {
        match ctx.pauses.resume(ctx.store, id).await {
            Ok(Some(pause)) => {
                let paused_s = (crate::clock::now_ms() - pause.paused_at) / 1000;
                tracing::warn!(destination = %id, %url, paused_s, "destination recovered: a probe was answered 200");
                let details = json!({"from": "paused", "paused_s": paused_s});
                tell(&ctx, (id, &url), StateChange::Recovered, details).await;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, destination = %id, "cannot resume"),
        }
        return;
    }
    if let Some(grade) = seen.recorded.regraded {
        if grade == Grade::Ok {
            if !ctx.pauses.is_paused(id) {
                tracing::warn!(destination = %id, %url, "destination recovered: its answers meet the standards again");
                tell(
                    &ctx,
                    (id, &url),
                    StateChange::Recovered,
                    json!({"from": "degraded"}),
                )
                .await;
            }
        } else {
            tracing::warn!(destination = %id, %url, grade = grade.as_str(), "destination degraded: its answers miss the provider's standards");
            let details = json!({"grade": grade.as_str()});
            tell(&ctx, (id, &url), StateChange::Degraded, details).await;
        }
    }
    let (Some(after), Some(since), false, false) = (
        ctx.pause_after,
        seen.recorded.failing_since,
        seen.probing,
        seen.delivered,
    ) else {
        return;
    };
    let now = crate::clock::now_ms();
    if now - since < after.as_millis() as i64 {
        return;
    }
    let pause = DestinationPause {
        id: id.clone(),
        url: url.clone(),
        reason: PauseReason::Failing,
        paused_at: now,
    };
    match ctx.pauses.pause(ctx.store, pause, ctx.probe_interval).await {
        Ok(true) => {
            let failing_s = (now - since) / 1000;
            tracing::warn!(destination = %id, %url, failing_s, "destination paused: nothing but failures; probing it from now on");
            let details = json!({"reason": "failing", "failing_s": failing_s});
            tell(&ctx, (id, &url), StateChange::Paused, details).await;
        }
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, destination = %id, "cannot pause"),
    }
}

async fn tell(
    ctx: &Lifecycle<'_>,
    destination: (&DestinationId, &str),
    change: StateChange,
    details: serde_json::Value,
) {
    if let Err(error) = destination_changed(
        (ctx.store, ctx.metrics, ctx.feed),
        destination,
        change,
        details,
    )
    .await
    {
        tracing::warn!(%error, "cannot store the operational event");
    }
}
