//! Human-readable durations (`"90s"`, `"30m"`, `"4h"`) on the wire and in config files.
//!
//! Config files are written by people and by the CLI's cloud-init template;
//! `"4h"` says what it means where `14400` does not. Serialising writes the
//! same grammar back, so a config round-trips.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses a duration such as `"90s"`, `"30m"`, `"4h"` or `"1h 30m"`.
pub fn parse(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text.trim())
}

/// Formats a duration the way [`parse`] reads it (`"4h"`, `"1h 30m"`).
pub fn format(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// `#[serde(with = "soong_protocol::duration::human")]` for a [`Duration`] field.
pub mod human {
    use super::{Deserialize, Deserializer, Duration, Serializer};

    /// Writes the duration as a humantime string.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format(*duration))
    }

    /// Reads a humantime string. A bare number is refused: `lease: 4` could
    /// mean hours or seconds, and guessing wrong costs money.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse(&text).map_err(|err| {
            serde::de::Error::custom(format!(
                "invalid duration `{text}` ({err}); write it like `90s`, `30m` or `4h`"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_through_their_text() {
        for text in ["90s", "30m", "4h", "1h 30m"] {
            let parsed = parse(text).unwrap();
            assert_eq!(parse(&format(parsed)).unwrap(), parsed);
        }
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("4h").unwrap(), Duration::from_secs(4 * 3600));
    }

    #[test]
    fn bare_numbers_are_not_durations() {
        assert!(parse("4").is_err());
    }
}
