//! The views' times as JSON text, read and written faster than chrono's own serde
//! and to the same text: RFC 3339 in UTC with `Z`, the fraction in 0, 3, 6 or 9
//! digits, whichever shows every non-zero digit. Chrono writes a time through the
//! formatting machinery a character at a time, which was a third of serialising the
//! views (their checksum, and every answer that lists them); a year outside 0–9999
//! and a leap second are left to chrono.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize, Serializer};

/// The longest text written here: `9999-12-31T23:59:59.999999999Z`.
const LONGEST: usize = 30;

pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; LONGEST];
    match format(time, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => time.serialize(s),
    }
}

pub fn serialize_opt<S: Serializer>(time: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serialize(time, s),
        None => s.serialize_none(),
    }
}

/// Reads a time by chrono's RFC 3339 parser first (every time the log holds is RFC
/// 3339), falling back to the general one behind `DateTime`'s `Deserialize`, which was
/// a twentieth of replaying a log.
pub fn deserialize_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    match DateTime::parse_from_rfc3339(&text) {
        Ok(time) => Ok(Some(time.with_timezone(&Utc))),
        Err(_) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn format<'a>(time: &DateTime<Utc>, buf: &'a mut [u8; LONGEST]) -> Option<&'a str> {
    let year = u32::try_from(time.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = time.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let mut at = 0;
    let mut put = |value: u32, digits: u32, then: Option<u8>| {
        for i in (0..digits).rev() {
            buf[at] = b'0' + (value / 10u32.pow(i) % 10) as u8;
            at += 1;
        }
        if let Some(separator) = then {
            buf[at] = separator;
            at += 1;
        }
    };
    put(year, 4, Some(b'-'));
    put(time.month(), 2, Some(b'-'));
    put(time.day(), 2, Some(b'T'));
    put(time.hour(), 2, Some(b':'));
    put(time.minute(), 2, Some(b':'));
    put(time.second(), 2, None);
    let (fraction, digits) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    if digits > 0 {
        put(0, 0, Some(b'.'));
        put(fraction, digits, None);
    }
    put(0, 0, Some(b'Z'));
    std::str::from_utf8(&buf[..at]).ok()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[derive(Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let base = Utc.with_ymd_and_hms(2026, 3, 2, 9, 5, 7).unwrap();
        let mut times = vec![
            base,
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
        ];
        // A leap second.
        if let Some(leap) = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
        {
            times.push(leap.and_utc());
        }
        for nanos in [
            1,
            10,
            999,
            1_000,
            120_000,
            5_000_000,
            123_456_789,
            999_999_999,
        ] {
            times.push(base + chrono::Duration::nanoseconds(nanos));
        }
        let mut step = base;
        for _ in 0..2_000 {
            step += chrono::Duration::nanoseconds(7_919_123_457_311);
            times.push(step);
        }
        for time in times {
            assert_eq!(
                serde_json::to_string(&Ours(time)).unwrap(),
                serde_json::to_string(&time).unwrap(),
                "{time:?}"
            );
        }
    }

    #[test]
    fn times_are_read_back_as_written() {
        #[derive(Deserialize)]
        struct Read(#[serde(deserialize_with = "deserialize_opt")] Option<DateTime<Utc>>);
        let time = Utc.with_ymd_and_hms(2026, 3, 2, 9, 5, 7).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        let text = serde_json::to_string(&Ours(time)).unwrap();
        let back: Read = serde_json::from_str(&text).unwrap();
        assert_eq!(back.0, Some(time));
        // Not RFC 3339, yet a time chrono reads: the general parser takes it.
        let relaxed: Read = serde_json::from_str("\"2026-03-02 09:05:07Z\"").unwrap();
        assert_eq!(
            relaxed.0,
            Some(Utc.with_ymd_and_hms(2026, 3, 2, 9, 5, 7).unwrap())
        );
        assert!(serde_json::from_str::<Read>("\"yesterday\"").is_err());
    }
}
