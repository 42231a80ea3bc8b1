//! The WhatsApp envelope: splitting Meta's notifications per number, and wrapping an admin
//! event's `value` into the envelope Meta would send.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{invalid, IngestError};
use crate::domain::ascii_escaped;
use crate::store::ChannelRef;

/// One part of a Meta notification, as split by [`split_envelope`].
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// The changes for one phone number, as a WhatsApp envelope of their own.
    Number {
        /// `metadata.phone_number_id` of the changes.
        phone_number_id: String,
        /// The envelope with only this number's changes.
        envelope: Value,
        /// The notification's own bytes, when it holds this number's changes only: relayed
        /// byte for byte, as Meta signed them.
        whole: bool,
    },
    /// The WABA-level changes of one WABA (`account_update`, `message_template_status_update`,
    /// …: changes without `metadata.phone_number_id`), for the WABA webhook and the partner.
    Waba {
        /// The entry id: Meta's WABA id, as Meta wrote it.
        waba: Value,
        /// The envelope with only this WABA's WABA-level changes.
        envelope: Value,
        /// The notification's own bytes, when it holds nothing else.
        whole: bool,
    },
}

impl Part {
    /// The changes this part carries, in order (each `{"value", "field"}` as Meta sent it).
    pub fn changes(&self) -> impl Iterator<Item = &Value> {
        let envelope = match self {
            Self::Number { envelope, .. } | Self::Waba { envelope, .. } => envelope,
        };
        envelope["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["changes"].as_array())
            .flatten()
    }
}

/// Whom a change belongs to: a number, or (without `metadata.phone_number_id`) the WABA
/// named by its entry's id.
#[derive(Debug, Clone, PartialEq)]
enum Owner {
    Number(String),
    Waba(Value),
}

/// Splits a WhatsApp envelope into one envelope per `metadata.phone_number_id` and one per
/// WABA for the changes that name no number, in order of first appearance, each keeping its
/// entries' fields and its changes' order.
pub fn split_envelope(body: &[u8]) -> Result<Vec<Part>, IngestError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("Invalid json: {e}")))?;
    let object = root
        .get("object")
        .cloned()
        .unwrap_or_else(|| json!("whatsapp_business_account"));
    let Some(entries) = root.get("entry").and_then(Value::as_array) else {
        return Err(invalid("the notification has no \"entry\" array"));
    };
    let mut groups: Vec<(Owner, Vec<Value>)> = Vec::new();
    for entry in entries {
        let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
            return Err(invalid("an entry has no \"changes\" array"));
        };
        let entry_id = entry.get("id").cloned().unwrap_or(Value::Null);
        for change in changes {
            let owner = match change
                .pointer("/value/metadata/phone_number_id")
                .and_then(Value::as_str)
            {
                Some(number) => Owner::Number(number.to_owned()),
                None => Owner::Waba(entry_id.clone()),
            };
            let index = match groups.iter().position(|(o, _)| *o == owner) {
                Some(index) => index,
                None => {
                    groups.push((owner, Vec::new()));
                    groups.len() - 1
                }
            };
            push_change(&mut groups[index].1, entry, change.clone());
        }
    }
    let whole = groups.len() == 1;
    Ok(groups
        .into_iter()
        .map(|(owner, entry)| {
            let envelope = json!({ "object": object, "entry": entry });
            match owner {
                Owner::Number(phone_number_id) => Part::Number {
                    phone_number_id,
                    envelope,
                    whole,
                },
                Owner::Waba(waba) => Part::Waba {
                    waba,
                    envelope,
                    whole,
                },
            }
        })
        .collect())
}

/// Appends `change` to the last entry if that is the same entry as Meta's (equal but for its
/// changes: Meta batches entries of one WABA id with different `time`s), else starts a new
/// entry that keeps every field of Meta's `entry` (`id`, `time`, …) but its other owners'
/// changes.
fn push_change(entries: &mut Vec<Value>, entry: &Value, change: Value) {
    if let Some(last) = entries.last_mut() {
        if same_but_changes(last, entry) {
            if let Some(changes) = last.get_mut("changes").and_then(Value::as_array_mut) {
                changes.push(change);
                return;
            }
        }
    }
    let mut copy = entry.clone();
    match copy.as_object_mut() {
        Some(fields) => {
            fields.insert("changes".to_owned(), json!([change]));
        }
        None => copy = json!({ "changes": [change] }),
    }
    entries.push(copy);
}

/// Whether two entries have the same fields apart from `changes`.
fn same_but_changes(built: &Value, entry: &Value) -> bool {
    let (Some(built), Some(entry)) = (built.as_object(), entry.as_object()) else {
        return false;
    };
    let others = |fields: &serde_json::Map<String, Value>| {
        fields.len() - usize::from(fields.contains_key("changes"))
    };
    others(built) == others(entry)
        && entry
            .iter()
            .filter(|(key, _)| *key != "changes")
            .all(|(key, value)| built.get(key) == Some(value))
}

/// The payload of an admin event for `channel`: a whole envelope is kept as sent; a value
/// is wrapped into the envelope Meta would send, adding `messaging_product` and the
/// channel's `metadata` when the value has none.
///
/// The value's bytes are copied, not re-serialised: only its top-level keys are parsed, so
/// what the client wrote is what the destination gets, at a fraction of the cost.
pub fn admin_payload(channel: &ChannelRef, body: &[u8]) -> Result<Bytes, IngestError> {
    let members: HashMap<String, &RawValue> = serde_json::from_slice(body).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            invalid("the event must be a JSON object: a \"value\" object or a whole envelope")
        } else {
            invalid(format!("Invalid json: {e}"))
        }
    })?;
    if let Some(entry) = members.get("entry") {
        if !entry.get().starts_with('[') {
            return Err(invalid("\"entry\" must be an array"));
        }
        return Ok(Bytes::copy_from_slice(body));
    }
    let text = std::str::from_utf8(body).map_err(|e| invalid(format!("Invalid json: {e}")))?;
    let inner = text.trim();
    let inner = inner[1..inner.len() - 1].trim();
    let mut added = Vec::with_capacity(2);
    if !members.contains_key("messaging_product") {
        added.push(r#""messaging_product":"whatsapp""#.to_owned());
    }
    if !members.contains_key("metadata") {
        // Digits only (validated at provisioning): nothing to escape.
        added.push(format!(
            r#""metadata":{{"display_phone_number":"{}","phone_number_id":"{}"}}"#,
            channel.phone_number.as_str().trim_start_matches('+'),
            channel.phone_number_id.as_str()
        ));
    }
    if !inner.is_empty() {
        added.push(inner.to_owned());
    }
    let envelope = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"{}","changes":[{{"value":{{{}}},"field":"messages"}}]}}]}}"#,
        channel.waba_id,
        added.join(",")
    );
    // Built here: in Meta's escaped-unicode form (see `ascii_escaped`).
    Ok(Bytes::from(ascii_escaped(&envelope).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(number: &str, text: &str) -> Value {
        json!({"value": {"messaging_product": "whatsapp",
                         "metadata": {"display_phone_number": "1", "phone_number_id": number},
                         "messages": [{"id": text}]},
               "field": "messages"})
    }

    #[test]
    fn splits_changes_per_phone_number_id_keeping_order() {
        let body = json!({"object": "whatsapp_business_account", "entry": [
            {"id": "W1", "time": 1700000000, "changes": [change("111", "a"), change("222", "b"), change("111", "c")]},
            {"id": "W2", "changes": [change("333", "d")]},
        ]});
        let parts = split_envelope(body.to_string().as_bytes()).unwrap();
        let numbers: Vec<_> = parts.iter().map(number_of).collect();
        assert_eq!(numbers, ["111", "222", "333"]);
        assert_eq!(
            parts[0],
            Part::Number {
                phone_number_id: "111".into(),
                envelope: json!({"object": "whatsapp_business_account",
                   "entry": [{"id": "W1", "time": 1700000000,
                              "changes": [change("111", "a"), change("111", "c")]}]}),
                whole: false,
            }
        );
        let Part::Number { envelope, .. } = &parts[2] else {
            panic!()
        };
        assert_eq!(envelope["entry"][0]["id"], "W2");
        let one = json!({"object": "whatsapp_business_account",
                         "entry": [{"id": "W1", "changes": [change("111", "a")]}]});
        let parts = split_envelope(one.to_string().as_bytes()).unwrap();
        assert!(
            matches!(parts[0], Part::Number { whole: true, .. }),
            "one number: relayed whole"
        );
    }

    #[test]
    fn changes_without_a_number_form_one_part_per_waba() {
        let template =
            json!({"value": {"event": "APPROVED"}, "field": "message_template_status_update"});
        let other = json!({"value": {"x": 1}, "field": "account_update"});
        let body = json!({"object": "whatsapp_business_account", "entry": [
            {"id": "W1", "time": 5, "changes": [template.clone(), change("111", "a"), other.clone()]},
            {"id": "W2", "changes": [other.clone()]},
        ]});
        let parts = split_envelope(body.to_string().as_bytes()).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0],
            Part::Waba {
                waba: json!("W1"),
                envelope: json!({"object": "whatsapp_business_account",
                    "entry": [{"id": "W1", "time": 5, "changes": [template.clone(), other.clone()]}]}),
                whole: false,
            }
        );
        assert_eq!(parts[0].changes().count(), 2);
        assert_eq!(number_of(&parts[1]), "111");
        assert!(matches!(&parts[2], Part::Waba { waba, .. } if *waba == json!("W2")));
        let alone = json!({"object": "whatsapp_business_account",
                           "entry": [{"id": "W1", "changes": [template, other]}]});
        let parts = split_envelope(alone.to_string().as_bytes()).unwrap();
        assert!(
            matches!(parts[..], [Part::Waba { whole: true, .. }]),
            "one WABA's changes only: relayed whole"
        );
    }

    fn number_of(part: &Part) -> &str {
        match part {
            Part::Number {
                phone_number_id, ..
            } => phone_number_id,
            _ => "",
        }
    }

    fn channel() -> ChannelRef {
        ChannelRef {
            id: crate::domain::ChannelId::from_raw("c1"),
            waba_id: crate::domain::WabaId::new(555).unwrap(),
            phone_number: crate::domain::PhoneNumber::parse("+4915112345678").unwrap(),
            phone_number_id: crate::domain::PhoneNumberId::parse("106540352242922").unwrap(),
        }
    }

    #[test]
    fn wraps_a_value_into_the_envelope_with_the_channel_metadata() {
        let body = br#"{"messages": [{"id": "wamid.1", "text": {"body": "h\u00e9"}}]}"#;
        let payload = admin_payload(&channel(), body).unwrap();
        let envelope: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            envelope,
            json!({"object": "whatsapp_business_account", "entry": [{"id": "555", "changes": [{
                "value": {"messaging_product": "whatsapp",
                          "metadata": {"display_phone_number": "4915112345678", "phone_number_id": "106540352242922"},
                          "messages": [{"id": "wamid.1", "text": {"body": "hé"}}]},
                "field": "messages"}]}]})
        );
        assert!(
            std::str::from_utf8(&payload)
                .unwrap()
                .contains(r#""h\u00e9""#),
            "bytes kept"
        );
    }

    #[test]
    fn keeps_given_metadata_and_whole_envelopes() {
        let value = br#"{"metadata": {"phone_number_id": "1"}, "messaging_product": "x"}"#;
        let envelope: Value =
            serde_json::from_slice(&admin_payload(&channel(), value).unwrap()).unwrap();
        assert_eq!(
            envelope["entry"][0]["changes"][0]["value"],
            json!({"metadata": {"phone_number_id": "1"}, "messaging_product": "x"})
        );
        let empty: Value =
            serde_json::from_slice(&admin_payload(&channel(), b" {} ").unwrap()).unwrap();
        assert_eq!(
            empty["entry"][0]["changes"][0]["value"]["messaging_product"],
            "whatsapp"
        );
        let whole = br#"{"object": "whatsapp_business_account", "entry": []}"#;
        assert_eq!(admin_payload(&channel(), whole).unwrap().as_ref(), whole);
        for bad in [&b"[]"[..], b"5", b"{", b"{\"entry\": 5}", b""] {
            assert!(admin_payload(&channel(), bad).is_err());
        }
    }

    #[test]
    fn rejects_bodies_that_are_not_envelopes() {
        for body in ["", "[]", "{}", "{\"entry\": [{}]}", "{\"entry\": 5}"] {
            assert!(split_envelope(body.as_bytes()).is_err(), "{body}");
        }
    }
}
