//! Which dead letters a replay takes ([`Filter`], from the command line)
//! and what it does with each ([`decide`]).

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use super::TRUNCATED;
use super::labels::{dead_lettered_at, header_str, region_of};
use crate::event::DataType;
use crate::message::RawMessage;
use crate::output::headers;

/// Which dead letters a replay takes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub error_class: Option<String>,
    pub data_type: Option<String>,
    pub region: Option<String>,
    /// Dead-lettered at or after.
    pub since: Option<DateTime<Utc>>,
    /// Dead-lettered before.
    pub until: Option<DateTime<Utc>>,
    pub batch: Option<String>,
}

fn parse_time(flag: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| {
            format!("{flag} {s}: expected an RFC 3339 time like 2024-01-15T10:00:00+08:00")
        })
}

impl Filter {
    /// From the command line's filters; checks the values.
    pub fn from_args(a: &crate::cli::ReplayArgs) -> anyhow::Result<Filter> {
        if let Some(d) = &a.data_type
            && DataType::parse(d).is_none()
        {
            bail!("--data-type {d}: use address, id_card or phone");
        }
        let f = Filter {
            error_class: a.error_class.clone(),
            data_type: a.data_type.clone(),
            region: a.region.clone(),
            since: a
                .since
                .as_deref()
                .map(|s| parse_time("--since", s))
                .transpose()?,
            until: a
                .until
                .as_deref()
                .map(|s| parse_time("--until", s))
                .transpose()?,
            batch: a.batch.clone(),
        };
        if let (Some(s), Some(u)) = (f.since, f.until)
            && s >= u
        {
            bail!("--since must be before --until");
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self.error_class.is_none()
            && self.data_type.is_none()
            && self.region.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.batch.is_none()
    }

    pub fn matches(&self, m: &RawMessage) -> bool {
        if let Some(c) = &self.error_class
            && header_str(m, headers::ERROR_CLASS) != Some(c.as_str())
        {
            return false;
        }
        if let Some(d) = &self.data_type
            && header_str(m, headers::DATA_TYPE) != Some(d.as_str())
        {
            return false;
        }
        if let Some(r) = &self.region
            && region_of(m) != *r
        {
            return false;
        }
        if let Some(b) = &self.batch
            && header_str(m, headers::BATCH_ID) != Some(b.as_str())
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(at) = dead_lettered_at(m) else {
                return false;
            };
            if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at >= u) {
                return false;
            }
        }
        true
    }

    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.error_class {
            parts.push(format!("error class {c}"));
        }
        if let Some(d) = &self.data_type {
            parts.push(format!("data type {d}"));
        }
        if let Some(r) = &self.region {
            parts.push(format!("region {r}"));
        }
        if let Some(s) = self.since {
            parts.push(format!("since {}", crate::output::rfc3339(s)));
        }
        if let Some(u) = self.until {
            parts.push(format!("until {}", crate::output::rfc3339(u)));
        }
        if let Some(b) = &self.batch {
            parts.push(format!("batch {b}"));
        }
        if parts.is_empty() {
            "all messages".into()
        } else {
            parts.join(", ")
        }
    }
}

/// What to do with one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Replay,
    Filtered,
    /// Replayed `count` times already, at or over the limit.
    RefusedMaxReplays {
        count: u32,
        max: u32,
    },
    /// The dead letter holds only a prefix of the original.
    RefusedTruncated {
        original_bytes: String,
    },
}

pub fn decide(m: &RawMessage, filter: &Filter, max_replays: u32) -> Decision {
    if !filter.matches(m) {
        return Decision::Filtered;
    }
    if let Some(size) = header_str(m, TRUNCATED) {
        return Decision::RefusedTruncated {
            original_bytes: size.to_string(),
        };
    }
    let count = m.replay_count();
    if count >= max_replays {
        return Decision::RefusedMaxReplays {
            count,
            max: max_replays,
        };
    }
    Decision::Replay
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::dlq::dead_letter;

    #[test]
    fn decisions() {
        let f = Filter::default();
        let m = dead_letter(&[(headers::REPLAY_COUNT, "3")]);
        assert_eq!(
            decide(&m, &f, 3),
            Decision::RefusedMaxReplays { count: 3, max: 3 }
        );
        assert_eq!(decide(&m, &f, 4), Decision::Replay);
        let t = dead_letter(&[(TRUNCATED, "2000000")]);
        assert!(matches!(
            decide(&t, &f, 3),
            Decision::RefusedTruncated { .. }
        ));
        let only_rule = Filter {
            error_class: Some("rule".into()),
            ..Default::default()
        };
        assert_eq!(decide(&m, &only_rule, 3), Decision::Filtered);
    }

    #[test]
    fn filters() {
        let m = dead_letter(&[
            (headers::ERROR_CLASS, "rule"),
            (headers::DATA_TYPE, "phone"),
            (headers::BATCH_ID, "b1"),
            (headers::FIRST_FAILED_AT, "2024-01-15T02:40:00Z"),
        ]);
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let yes = Filter {
            error_class: Some("rule".into()),
            data_type: Some("phone".into()),
            // No region header: the key is the region.
            region: Some("3201".into()),
            since: Some(t("2024-01-15T02:40:00Z")),
            until: Some(t("2024-01-15T02:40:01Z")),
            batch: Some("b1".into()),
        };
        assert!(yes.matches(&m));
        for no in [
            Filter {
                error_class: Some("schema".into()),
                ..Default::default()
            },
            Filter {
                data_type: Some("address".into()),
                ..Default::default()
            },
            Filter {
                region: Some("3202".into()),
                ..Default::default()
            },
            Filter {
                until: Some(t("2024-01-15T02:40:00Z")),
                ..Default::default()
            },
            Filter {
                since: Some(t("2024-01-15T10:40:01+08:00")),
                ..Default::default()
            },
            Filter {
                batch: Some("b2".into()),
                ..Default::default()
            },
        ] {
            assert!(!no.matches(&m), "{no:?}");
        }
        // Without the header, the message timestamp is the time.
        let ts = dead_letter(&[]);
        let since = Filter {
            since: Some(t("2024-01-15T02:00:00Z")),
            ..Default::default()
        };
        assert!(since.matches(&ts));
    }
}
