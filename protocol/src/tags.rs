//! Launch tags (DESIGN.md §3.1): how an instance carries its own cost
//! controls in the cloud, where the watchdog can read them even if the
//! daemon never started.
//!
//! Keys match Lambda's `^[a-z][a-z0-9-:]+$` (at most 55 characters); values
//! are at most 128 characters. Instants are Unix seconds, which fit easily
//! and need no time-zone parsing in the worker.

use time::OffsetDateTime;

/// `soong:managed=true`: the instance is soong's to stop. Nothing without it
/// is ever touched.
pub const MANAGED: &str = "soong:managed";
/// `soong:launched-at=<unix s>`.
pub const LAUNCHED_AT: &str = "soong:launched-at";
/// `soong:hard-deadline=<unix s>`.
pub const HARD_DEADLINE: &str = "soong:hard-deadline";
/// `soong:lease-deadline=<unix s>` (the initial lease; extensions live in the daemon).
pub const LEASE_DEADLINE: &str = "soong:lease-deadline";
/// `soong:model=<id>`.
pub const MODEL: &str = "soong:model";

/// The value of [`MANAGED`].
pub const MANAGED_VALUE: &str = "true";
/// Lambda's limit on key length.
pub const MAX_KEY_CHARS: usize = 55;
/// Lambda's limit on value length.
pub const MAX_VALUE_CHARS: usize = 128;

/// A tag that Lambda would refuse, or a soong tag that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// The key breaks `^[a-z][a-z0-9-:]+$` or is too long.
    #[error("tag key `{key}` must match `^[a-z][a-z0-9-:]+$` and be at most 55 characters")]
    InvalidKey {
        /// The key.
        key: String,
    },
    /// The value is over 128 characters.
    #[error("tag `{key}` has a value of {chars} characters; at most 128 are allowed")]
    ValueTooLong {
        /// The key.
        key: String,
        /// The value's length in characters.
        chars: usize,
    },
    /// A soong tag that must be present is not.
    #[error("tag `{key}` is missing")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A soong time tag that is not Unix seconds.
    #[error("tag `{key}` has value `{value}`, which is not a time in Unix seconds")]
    InvalidTime {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
    },
}

/// Checks a key against Lambda's rule.
pub fn validate_key(key: &str) -> Result<(), TagError> {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = key.len() >= 2
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == ':');
    if first_ok && rest_ok && key.len() <= MAX_KEY_CHARS {
        Ok(())
    } else {
        Err(TagError::InvalidKey {
            key: key.to_owned(),
        })
    }
}

/// Checks a key and value against Lambda's rules.
pub fn validate(key: &str, value: &str) -> Result<(), TagError> {
    validate_key(key)?;
    let chars = value.chars().count();
    if chars > MAX_VALUE_CHARS {
        return Err(TagError::ValueTooLong {
            key: key.to_owned(),
            chars,
        });
    }
    Ok(())
}

/// An instant as a tag value: Unix seconds.
pub fn format_time(at: OffsetDateTime) -> String {
    at.unix_timestamp().to_string()
}

/// A tag value as an instant.
pub fn parse_time(key: &'static str, value: &str) -> Result<OffsetDateTime, TagError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .ok_or_else(|| TagError::InvalidTime {
            key,
            value: value.to_owned(),
        })
}

/// Whether a tag list marks an instance as soong's.
pub fn is_managed<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    tags.into_iter()
        .any(|(key, value)| key == MANAGED && value == MANAGED_VALUE)
}

/// The soong tags of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTags {
    /// When the launch call succeeded.
    pub launched_at: OffsetDateTime,
    /// `launched_at + hard_timeout`.
    pub hard_deadline: OffsetDateTime,
    /// `launched_at + lease` (before extensions).
    pub lease_deadline: OffsetDateTime,
    /// The model served, if any.
    pub model: Option<String>,
}

impl LaunchTags {
    /// The tags to launch with, `soong:managed=true` first. Fails if the
    /// model id is too long for a tag value.
    pub fn to_pairs(&self) -> Result<Vec<(String, String)>, TagError> {
        let mut pairs = vec![
            (MANAGED.to_owned(), MANAGED_VALUE.to_owned()),
            (LAUNCHED_AT.to_owned(), format_time(self.launched_at)),
            (HARD_DEADLINE.to_owned(), format_time(self.hard_deadline)),
            (LEASE_DEADLINE.to_owned(), format_time(self.lease_deadline)),
        ];
        if let Some(model) = &self.model {
            pairs.push((MODEL.to_owned(), model.clone()));
        }
        for (key, value) in &pairs {
            validate(key, value)?;
        }
        Ok(pairs)
    }

    /// Reads the soong tags from an instance's tag list. Returns `Ok(None)`
    /// when the instance is not soong-managed at all.
    pub fn from_pairs<'a>(
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Option<Self>, TagError> {
        let tags: Vec<(&str, &str)> = tags.into_iter().collect();
        if !is_managed(tags.iter().copied()) {
            return Ok(None);
        }
        let find = |key: &'static str| tags.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let time = |key: &'static str| {
            find(key)
                .ok_or(TagError::Missing { key })
                .and_then(|value| parse_time(key, value))
        };
        Ok(Some(Self {
            launched_at: time(LAUNCHED_AT)?,
            hard_deadline: time(HARD_DEADLINE)?,
            lease_deadline: time(LEASE_DEADLINE)?,
            model: find(MODEL).map(str::to_owned),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn launch_tags_round_trip() {
        let tags = LaunchTags {
            launched_at: datetime!(2026-12-01 10:00:00 UTC),
            hard_deadline: datetime!(2026-12-01 18:00:00 UTC),
            lease_deadline: datetime!(2026-12-01 14:00:00 UTC),
            model: Some("qwen2.5-coder-32b".into()),
        };
        let pairs = tags.to_pairs().unwrap();
        assert_eq!(pairs[0], ("soong:managed".into(), "true".into()));
        assert_eq!(pairs[1].1, "1796119200");
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(LaunchTags::from_pairs(borrowed).unwrap(), Some(tags));
    }

    #[test]
    fn unmanaged_instances_have_no_launch_tags() {
        assert_eq!(LaunchTags::from_pairs([("team", "ml")]).unwrap(), None);
    }

    #[test]
    fn a_managed_instance_with_a_broken_time_is_an_error() {
        let result = LaunchTags::from_pairs([
            (MANAGED, "true"),
            (LAUNCHED_AT, "yesterday"),
            (HARD_DEADLINE, "1"),
            (LEASE_DEADLINE, "1"),
        ]);
        assert!(matches!(
            result,
            Err(TagError::InvalidTime {
                key: LAUNCHED_AT,
                ..
            })
        ));
    }

    #[test]
    fn keys_follow_lambdas_pattern() {
        for key in [MANAGED, LAUNCHED_AT, HARD_DEADLINE, LEASE_DEADLINE, MODEL] {
            validate_key(key).unwrap();
        }
        for bad in ["", "a", "Soong:x", "1abc", "soong_model", &"a".repeat(56)] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            validate("soong:model", &"m".repeat(129)),
            Err(TagError::ValueTooLong { chars: 129, .. })
        ));
    }
}
