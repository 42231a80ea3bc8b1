//! Realistic WhatsApp notification bodies for the headline scenario.
//!
//! Why: a 200-byte "hello" measures less than a user's traffic does (issue #14). These follow
//! the shapes of Meta's notifications (tests/fixtures/meta): about nine in ten are statuses
//! (`sent`, `delivered`, `read`, each with `conversation` and `pricing`), the rest inbound
//! messages with `contacts` (text, image, interactive reply, location). Every body is a whole
//! envelope for the provisioned channel's `phone_number_id`, 0.8 to 1.5 KB, with a unique
//! `wamid`; some carry non-ASCII text as raw UTF-8 (é, 日本語, emoji), some as Meta's
//! `\u00e9` escapes. Built per send from a template (about a microsecond), so the generator
//! holds no pre-built corpus; its cost is in the generator's CPU per event.

#[allow(unused_imports)]
use super::*;

use serde::{Deserialize, Serialize};

/// The smallest and largest body the mix may produce, in bytes.
pub(crate) const BODY_BYTES: std::ops::RangeInclusive<usize> = 800..=1_500;

/// What a body names: the provisioned channel's number and WABA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Channel {
    pub(crate) phone_number_id: String,
    /// Digits only, as Meta writes `display_phone_number`.
    pub(crate) display_phone_number: String,
    pub(crate) waba_id: String,
}

/// The unique message id of event `id`: shaped like Meta's base64 ids, with the bench's tag
/// (`U1dC`, "SWB") and the id in hex, so the receiver can read it back (`harness::wamid`).
pub(crate) fn unique_wamid(id: u64) -> String {
    format!("wamid.HBgNU1dC{id:016X}FQIAERgSAA==")
}

/// The envelope of event `id`; the kind follows from `id % 100` (90 statuses, 10 inbound).
pub(crate) fn body(channel: &Channel, id: u64) -> String {
    let value = match id % 100 {
        0..30 => status(id, "sent"),
        30..60 => status(id, "delivered"),
        60..90 => status(id, "read"),
        90..95 => inbound(id, &text(id)),
        95..97 => inbound(id, &image(id)),
        97..99 => inbound(id, &interactive(id)),
        _ => inbound(id, &location(id)),
    };
    format!(
        concat!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"{waba}","changes":[{{"value":{{"#,
            r#""messaging_product":"whatsapp","metadata":{{"display_phone_number":"{display}","#,
            r#""phone_number_id":"{number}"}},{value}}},"field":"messages"}}]}}]}}"#
        ),
        waba = channel.waba_id,
        display = channel.display_phone_number,
        number = channel.phone_number_id,
        value = value,
    )
}

/// A customer's number, varied by event.
fn customer(id: u64) -> String {
    format!("49176{:08}", id.wrapping_mul(2_654_435_761) % 100_000_000)
}

/// Callback data that businesses attach to their sends: order references, some with
/// non-ASCII text escaped as Meta writes it, 150 to 600 bytes.
fn callback_data(id: u64) -> String {
    const PARTS: [&str; 5] = [
        r"order=4711;step=shipping;carrier=DHL;note=Zustellung am Montag",
        r"campaign=winter-sale;segment=returning;locale=de_DE;Gr\u00fc\u00dfe aus M\u00fcnchen",
        r"ticket=SUP-20931;queue=billing;agent=fran\u00e7oise;priority=high",
        r"cart=8f3a1c;items=3;total=129.90EUR;coupon=WINTER24;channel=app",
        r"flow=onboarding;screen=welcome;variant=B;ref=https:\/\/example.com\/promo?c=42",
    ];
    let count = 3 + (id / 100 % 7) as usize;
    (0..count)
        .map(|i| PARTS[(id as usize + i) % PARTS.len()])
        .collect::<Vec<_>>()
        .join("|")
}

fn status(id: u64, state: &str) -> String {
    let category = ["marketing", "utility", "authentication", "service"][(id % 4) as usize];
    format!(
        concat!(
            r#""statuses":[{{"id":"{wamid}","status":"{state}","timestamp":"{ts}","#,
            r#""recipient_id":"{to}","biz_opaque_callback_data":"{data}","#,
            r#""conversation":{{"id":"{conversation:032x}","expiration_timestamp":"{expires}","#,
            r#""origin":{{"type":"{category}"}}}},"pricing":{{"billable":true,"#,
            r#""pricing_model":"CBP","category":"{category}","type":"regular"}}}}]"#
        ),
        wamid = unique_wamid(id),
        state = state,
        ts = 1_717_171_870 + id % 86_400,
        to = customer(id),
        data = callback_data(id),
        conversation = u128::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
        expires = 1_717_258_270 + id % 86_400,
        category = category,
    )
}

/// `contacts` and one message of `kind`, as an inbound notification carries them.
fn inbound(id: u64, message: &str) -> String {
    const NAMES: [&str; 4] = [
        "José Müller",
        r"Ren\u00e9e Dupr\u00e9",
        "山田 太郎",
        r"\u0410\u043d\u043d\u0430 \u041f\u0435\u0442\u0440\u043e\u0432\u0430",
    ];
    format!(
        concat!(
            r#""contacts":[{{"profile":{{"name":"{name}"}},"wa_id":"{from}"}}],"#,
            r#""messages":[{{"from":"{from}","id":"{wamid}","timestamp":"{ts}",{message}}}]"#
        ),
        name = NAMES[(id / 100 % 4) as usize],
        from = customer(id),
        wamid = unique_wamid(id),
        ts = 1_717_171_717 + id % 86_400,
        message = message,
    )
}

fn text(id: u64) -> String {
    const TEXTS: [&str; 4] = [
        "Grüß Gott! Können Sie mir helfen? Meine Bestellung ist noch nicht angekommen, \
         die Sendungsverfolgung zeigt seit drei Tagen denselben Status. 你好，世界 😀👍🏽 \
         Ich habe die Bestellnummer 4711-0815 und die Lieferadresse ist Hohe Straße 12, \
         50667 Köln. Könnten Sie bitte beim Paketdienst nachfragen, ob das Paket verloren \
         gegangen ist? Vielen Dank im Voraus und schöne Grüße aus Köln!",
        concat!(
            r"Bonjour, je voudrais modifier l\u2019adresse de livraison de ma commande : ",
            r"12 rue de la Paix, 75002 Paris. Merci beaucoup \u00e0 vous ! \ud83d\ude4f\ud83c\udffd ",
            r"Est-ce possible avant l\u2019exp\u00e9dition ? J\u2019ai pass\u00e9 la commande ",
            r"hier soir (n\u00b0 FR-88231) et je ne serai pas chez moi la semaine prochaine. ",
            r"Si ce n\u2019est pas possible, pouvez-vous la garder au point relais ? \u2764\ufe0f"
        ),
        "こんにちは！注文した商品のサイズを変更したいのですが、可能でしょうか？\
         Mサイズ→Lサイズでお願いします。注文番号はJP-20931です。\
         もし在庫がなければ、返品の手続きを教えてください。\
         配送先は東京都渋谷区神南1-2-3です。来週の月曜日までに届くと助かります。\
         よろしくお願いいたします 🙇‍♀️🎁",
        "Hi there, quick question about my invoice #INV-2024-0915: the total shows 129.90 EUR \
         but the cart said 119.90 EUR with the WINTER24 coupon. Could you check? I paid by \
         card ending 4242 yesterday at 18:05 and got two confirmation emails, so I am worried \
         I was charged twice. Please let me know what happened and whether a refund is \
         on its way. Thanks a lot! ✌️",
    ];
    let body = TEXTS[(id / 100 % 4) as usize];
    format!(r#""type":"text","text":{{"body":"{body}"}}"#)
}

fn image(id: u64) -> String {
    format!(
        concat!(
            r#""type":"image","image":{{"caption":"Voil\u00e0 la facture \u2014 merci ! \ud83d\udcf8 "#,
            r#"Photo du colis ab\u00eem\u00e9 \u00e0 la r\u00e9ception","mime_type":"image\/jpeg","#,
            r#""sha256":"dGhpcyBpcyBhIHNoYTI1NiBoYXNoIG9mIHRoZSBpbWFnZQ==","id":"{media}","#,
            r#""url":"https:\/\/lookaside.fbsbx.com\/whatsapp_business\/attachments\/?mid={media}"#,
            r#"&ext=1717171720&hash=ATuRJ3kq8Xv5cW0mZ2pYlTnB4sDfGhJkLqWeRtYuIoPa"}}"#
        ),
        media = 1_479_537_139_650_973u64 + id,
    )
}

fn interactive(id: u64) -> String {
    format!(
        concat!(
            r#""context":{{"from":"15550000001","id":"wamid.HBgLMTU1NTAwMDAwMDEVAgARGBI5QTdDMkQ0RTZGOEExQjNDNQA=","#,
            r#""referred_product":{{"catalog_id":"2314876190345521","product_retailer_id":"sku-{id}"}}}},"#,
            r#""type":"interactive","interactive":{{"type":"list_reply","list_reply":"#,
            r#"{{"id":"slot-{id}","title":"Morgen 10–12 Uhr ✅","#,
            r#""description":"Lieferung an die Packstation 123, Gebühr 0,00 \u20ac, Abholung bis 18 Uhr"}}}}"#
        ),
        id = id,
    )
}

fn location(id: u64) -> String {
    format!(
        concat!(
            r#""type":"location","location":{{"latitude":{lat},"longitude":{lon},"#,
            r#""name":"Caf\u00e9 M\u00fcller am Marienplatz \u2014 Konditorei und Fr\u00fchst\u00fcck","#,
            r#""address":"Marienplatz 8, 80331 M\u00fcnchen, Deutschland \u2014 2. Stock, "#,
            r#"Eingang neben der B\u00e4ckerei, gegen\u00fcber dem Rathaus (Glockenspiel)","#,
            r#""url":"https:\/\/maps.example.com\/place\/{id}?utm_source=whatsapp&utm_medium=share"}}"#
        ),
        lat = 48.137_154 + (id % 1000) as f64 * 1e-6,
        lon = 11.575_382 - (id % 1000) as f64 * 1e-6,
        id = id,
    )
}

/// Smallest, mean and largest body over a sample of ids covering every kind and variant;
/// an error if one falls outside [`BODY_BYTES`] or lost its id.
pub(crate) fn check_sizes(channel: &Channel) -> BenchResult<(usize, usize, usize)> {
    let (mut min, mut max, mut total) = (usize::MAX, 0, 0);
    let sample = 0..5_000u64;
    for id in sample.clone() {
        let body = body(channel, id);
        if !BODY_BYTES.contains(&body.len()) || wamid(body.as_bytes()) != Some(id) {
            return Err(format!(
                "body {id} is {} bytes or lost its wamid: {body}",
                body.len()
            )
            .into());
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(&body).is_err() {
            return Err(format!("body {id} is not JSON: {body}").into());
        }
        min = min.min(body.len());
        max = max.max(body.len());
        total += body.len();
    }
    Ok((min, total / sample.count(), max))
}
