//! Payloads at rest: stored packed (zstd with a dictionary), read back byte for byte by
//! every path that reads them (a claim, the event view, the stream's replay), and the
//! claims' memory budget counts them unpacked.

use bytes::Bytes;
use switchboard::domain::{AttemptId, EventId};
use switchboard::domain::{EventKind, PartnerEventType};
use switchboard::store::{memory_cost, EventBody, NewEvent, ReplayFrom};

use crate::support::*;

/// Every notification of the corpus, its placeholders filled: Meta's shapes, some
/// pretty-printed, some with `\u00e9` escapes, some with raw UTF-8 in several scripts.
fn corpus() -> Vec<Bytes> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/meta");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let filled = text
                .replace("\"PHONE_NUMBER_ID", "\"106540352242922")
                .replace("\"DISPLAY_PHONE_NUMBER", "\"4915100000000")
                .replace("\"WABA_ID", "\"102290129340398");
            Bytes::from(filled)
        })
        .collect()
}

fn notification(channel: &switchboard::domain::ChannelId, body: Bytes, at: i64) -> NewEvent {
    NewEvent {
        kind: EventKind::Whatsapp,
        channel: Some(channel.clone()),
        partner: None,
        phone_number_id: None,
        waba: None,
        body: EventBody::Bytes(body),
        received_at: at,
        trace: None,
    }
}

conformance!(
    every_notification_reads_back_byte_for_byte_from_every_path,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let at = now() - 1_000;
        let bodies = corpus();
        let mut events: Vec<NewEvent> = bodies
            .iter()
            .map(|body| notification(&id, body.clone(), at))
            .collect();
        // Also a payload that does not shrink, stored as it came, and a partner event
        // (rendered and packed inside the write).
        events.push(notification(&id, Bytes::from_static(b"{}"), at));
        events.push(NewEvent::partner(
            partner(1).id,
            PartnerEventType::builtin("channel_created"),
            serde_json::json!({"name": "Ünïcødé 日本語 🎉"}),
            at,
        ));
        let saved = save(store, events).await;
        for (one, body) in saved.iter().zip(&bodies) {
            assert_eq!(
                &one.payload, body,
                "the saved answer holds the bytes as given"
            );
        }
        // From the store: a claim.
        let due = claim_all(store).await;
        assert_eq!(due.len(), saved.len());
        for delivery in &due {
            let stored = saved.iter().find(|s| s.event == delivery.event).unwrap();
            assert_eq!(
                delivery.payload, stored.payload,
                "claimed bytes of {:?}",
                delivery.event
            );
            assert_eq!(delivery.memory_cost(), memory_cost(stored.payload.len()));
        }
        // The event view.
        for one in &saved {
            let record = store.event(one.event).await.unwrap().unwrap();
            assert_eq!(record.payload, one.payload, "event view of {:?}", one.event);
        }
        // The stream's replay.
        let from = ReplayFrom {
            event: EventId(0),
            attempt: AttemptId(0),
        };
        let replay = store.replay(from, 1_000).await.unwrap();
        assert_eq!(replay.events.len(), saved.len());
        for (replayed, one) in replay.events.iter().zip(&saved) {
            assert_eq!(replayed.payload, one.payload, "replay of {:?}", one.event);
        }
    }
);

conformance!(
    the_memory_budget_counts_payloads_unpacked,
    |db: Db| async move {
        let store = &*db.store;
        let id = provisioned(store).await;
        let at = now() - 1_000;
        let body = corpus().into_iter().max_by_key(|b| b.len()).unwrap();
        let events = (0..10)
            .map(|_| notification(&id, body.clone(), at))
            .collect();
        save(store, events).await;
        // Room for three unpacked (ten would fit if the packed size counted).
        let budget = 3 * memory_cost(body.len()) + 10;
        let now = now();
        let due = store
            .claim_due(now, 100, budget, now + 60_000)
            .await
            .unwrap();
        assert_eq!(
            due.len(),
            3,
            "claimed within the budget of their unpacked size"
        );
    }
);
