//! Payloads at rest: compressed with zstd and a dictionary trained on WhatsApp
//! notifications, so a ~1.3 KB notification takes a few hundred bytes on disk.
//!
//! A notification is small and shaped like every other (the same keys, the same envelope),
//! which is where a dictionary pays: compressed alone it would shrink little, compressed
//! against `payload.dict` (trained on Meta's shapes, `train_the_dictionary` below) it keeps
//! only what is its own (ids, names, text). Stored bytes are either a zstd frame (they start
//! with zstd's magic number, which no JSON text can) or the payload as it came, for rows
//! written before compression or payloads that do not shrink; so no migration rewrites old
//! rows. Packing runs where the write is prepared, off the SQLite writer's thread.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;

use bytes::Bytes;
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

use crate::store::decode::Corrupt;
use crate::store::{EventBody, NewEvent, StoreError};

/// The dictionary (zstd format, with its id), trained on WhatsApp notifications.
static DICTIONARY: &[u8] = include_bytes!("payload.dict");

/// zstd's level. On the notification corpus (`levels` below, `cargo test --release --lib
/// payload_levels -- --ignored --nocapture`) level 1 packs to 19.2 % against level 3's
/// 18.8 %, in about two thirds of the time; negative levels are faster still but pack to
/// 26 to 30 %. Packing is on every event's path, so the few bytes are worth the time.
const LEVEL: i32 = 1;

/// The first bytes of every zstd frame.
const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The largest payload a frame may claim to hold (ingest refuses bodies far smaller).
const MAX_UNPACKED: usize = 64 << 20;

fn encoder() -> &'static EncoderDictionary<'static> {
    static PREPARED: OnceLock<EncoderDictionary<'static>> = OnceLock::new();
    PREPARED.get_or_init(|| EncoderDictionary::copy(DICTIONARY, LEVEL))
}

fn decoder() -> &'static DecoderDictionary<'static> {
    static PREPARED: OnceLock<DecoderDictionary<'static>> = OnceLock::new();
    PREPARED.get_or_init(|| DecoderDictionary::copy(DICTIONARY))
}

thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// The bytes to store for `payload`: a zstd frame when that is smaller, else the payload.
pub fn pack(payload: &[u8]) -> Vec<u8> {
    let packed = COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Compressor::with_prepared_dictionary(encoder()).ok();
        }
        cell.as_mut()?.compress(payload).ok()
    });
    match packed {
        Some(packed) if packed.len() < payload.len() => packed,
        _ => payload.to_vec(),
    }
}

/// The payload stored as `stored` (see [`pack`]); `row` names the row in an error.
pub fn unpack(stored: Vec<u8>, row: impl Fn() -> String) -> Result<Bytes, StoreError> {
    if !stored.starts_with(&MAGIC) {
        return Ok(Bytes::from(stored));
    }
    let corrupt = |why: String| {
        StoreError::Corrupt(Corrupt {
            row: row(),
            column: "payload",
            value: why,
        })
    };
    let size = match zstd::zstd_safe::get_frame_content_size(&stored) {
        Ok(Some(size)) if size as usize <= MAX_UNPACKED => size as usize,
        _ => return Err(corrupt("a zstd frame without a usable size".into())),
    };
    let unpacked = DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(Decompressor::with_prepared_dictionary(decoder())?);
        }
        match cell.as_mut() {
            Some(decompressor) => decompressor.decompress(&stored, size),
            None => Err(std::io::Error::other("no decompressor")),
        }
    });
    unpacked
        .map(Bytes::from)
        .map_err(|e| corrupt(format!("zstd frame that does not decompress: {e}")))
}

/// The payloads of `events` packed (`None` for a partner event, whose body the store
/// renders once the event has its id), prepared before the write runs: on the caller's
/// thread, not the SQLite writer's.
pub fn pack_all(events: &[NewEvent]) -> Vec<Option<Vec<u8>>> {
    events
        .iter()
        .map(|event| match &event.body {
            EventBody::Bytes(bytes) => Some(pack(bytes)),
            EventBody::Partner(_) => None,
        })
        .collect()
}

/// What to store as `event`'s payload: its packed bytes as `prepared` by [`pack_all`], or
/// packed now when they were not; empty for a partner event (rendered once it has its id).
pub fn stored_form<'a>(event: &NewEvent, prepared: Option<&'a Option<Vec<u8>>>) -> Cow<'a, [u8]> {
    match (&event.body, prepared) {
        (EventBody::Bytes(_), Some(Some(packed))) => Cow::Borrowed(packed),
        (EventBody::Bytes(bytes), _) => Cow::Owned(pack(bytes)),
        (EventBody::Partner(_), _) => Cow::Borrowed(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/meta");
        let mut texts: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
            .collect();
        texts.sort();
        texts
    }

    /// A fixture as Meta would send it: placeholders filled, every digit varied (ids,
    /// numbers, times), compact JSON for most.
    fn variant(fixture: &str, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut digits =
            |n: usize| -> String { (0..n).map(|_| char::from(b'0' + rng.u8(0..10))).collect() };
        let filled = fixture
            .replace("\"PHONE_NUMBER_ID", &format!("\"1{}", digits(14)))
            .replace("\"DISPLAY_PHONE_NUMBER", &format!("\"49{}", digits(10)))
            .replace("\"WABA_ID", &format!("\"1{}", digits(14)));
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
        let varied: String = filled
            .chars()
            .map(|c| match c {
                '0'..='9' => char::from(b'0' + rng.u8(0..10)),
                c => c,
            })
            .collect();
        if seed % 4 == 0 {
            return varied.into_bytes();
        }
        match serde_json::from_str::<serde_json::Value>(&varied) {
            Ok(value) => serde_json::to_vec(&value).unwrap(),
            Err(_) => varied.into_bytes(),
        }
    }

    #[test]
    fn every_shape_of_notification_comes_back_byte_for_byte_and_smaller() {
        for (i, fixture) in fixtures().iter().enumerate() {
            let payload = variant(fixture, 1_000 + i as u64);
            let packed = pack(&payload);
            assert!(packed.len() < payload.len(), "fixture {i} did not shrink");
            let back = unpack(packed, || "event 1".into()).unwrap();
            assert_eq!(back.as_ref(), payload.as_slice());
        }
    }

    #[test]
    fn a_typical_notification_takes_a_few_hundred_bytes() {
        let fixtures = fixtures();
        let (mut raw, mut packed) = (0, 0);
        for (i, fixture) in fixtures.iter().enumerate() {
            let payload = variant(fixture, 7_000 + i as u64);
            raw += payload.len();
            packed += pack(&payload).len();
        }
        eprintln!(
            "packed {packed} of {raw} bytes over {} fixtures",
            fixtures.len()
        );
        // Measured when the dictionary was trained: about a quarter. A looser bound here,
        // so a new fixture does not fail the build; the benchmark reports the real figure.
        assert!(packed * 2 < raw, "packed {packed} of {raw} bytes");
    }

    #[test]
    fn rows_stored_before_compression_read_as_they_are() {
        let raw = br#"{"object":"whatsapp_business_account","entry":[]}"#.to_vec();
        assert_eq!(
            unpack(raw.clone(), || "event 1".into()).unwrap().as_ref(),
            &raw[..]
        );
        let tiny = b"{}";
        assert_eq!(
            pack(tiny),
            tiny.to_vec(),
            "a payload that does not shrink is kept"
        );
    }

    #[test]
    fn a_damaged_frame_is_an_error_naming_its_row() {
        let mut packed = pack(&variant(&fixtures()[0], 3));
        let last = packed.len() - 1;
        packed[last / 2] ^= 0xff;
        packed.truncate(last);
        let error = unpack(packed, || "event 42".into()).unwrap_err();
        assert!(error.to_string().contains("event 42"), "{error}");
    }

    /// Size and time of packing the corpus at several levels, to choose [`LEVEL`] (run by
    /// hand: `cargo test --release --lib payload_levels -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn payload_levels() {
        let fixtures = fixtures();
        let payloads: Vec<Vec<u8>> = (0..3_000u64)
            .map(|n| variant(&fixtures[n as usize % fixtures.len()], 50_000 + n))
            .collect();
        let raw: usize = payloads.iter().map(Vec::len).sum();
        for level in [-5, -3, -1, 1, 2, 3] {
            let dictionary = EncoderDictionary::copy(DICTIONARY, level);
            let mut compressor = Compressor::with_prepared_dictionary(&dictionary).unwrap();
            let start = std::time::Instant::now();
            let packed: usize = payloads
                .iter()
                .map(|p| compressor.compress(p).unwrap().len())
                .sum();
            let each = start.elapsed().as_secs_f64() / payloads.len() as f64 * 1e6;
            let share = packed as f64 * 100.0 / raw as f64;
            eprintln!("level {level}: {packed} of {raw} bytes ({share:.1} %), {each:.2} µs each");
        }
    }

    /// Rewrites `payload.dict` from the fixtures (run by hand after adding shapes:
    /// `cargo test --lib train_the_dictionary -- --ignored`). Rows packed with an older
    /// dictionary need it to be read: keep it and choose by the frame's dictionary id
    /// before replacing this one in a release.
    #[test]
    #[ignore]
    fn train_the_dictionary() {
        let fixtures = fixtures();
        let samples: Vec<Vec<u8>> = (0..6_000u64)
            .map(|n| variant(&fixtures[n as usize % fixtures.len()], n))
            .collect();
        let dictionary = zstd::dict::from_samples(&samples, 16 * 1024).unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/payload.dict");
        std::fs::write(path, dictionary).unwrap();
    }
}
