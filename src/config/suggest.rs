//! "Did you mean": turning a file or environment that does not parse into an
//! error naming the key, the nearest known key and the fix.

use super::{ConfigError, RawConfig, err};

/// Explains why the file and environment did not extract into a
/// [`RawConfig`]: the key, a nearest known key for a typo, a duration's
/// expected form, and where the value came from.
pub(super) fn explain(e: figment::Error) -> ConfigError {
    let key = if e.path.is_empty() {
        "(file)".to_string()
    } else {
        e.path.join(".")
    };
    let hint = match &e.kind {
        figment::error::Kind::UnknownField(f, expected) => {
            let guess = closest(f, expected)
                .map(|g| format!("did you mean `{g}`? "))
                .unwrap_or_default();
            format!(
                "unknown key `{f}`; {guess}known keys here: {}. Fix the spelling or remove it",
                expected.join(", ")
            )
        }
        figment::error::Kind::InvalidType(actual, expected) => match default_duration(&e.path) {
            Some(d) => format!(
                "has {actual}, expected a duration in quotes, e.g. \"500ms\", \"2s\" or \"1m\" (default \"{d}\")"
            ),
            None => format!("has {actual}, expected {expected}"),
        },
        other => other.to_string(),
    };
    let origin = e
        .metadata
        .as_ref()
        .map(|m| format!(" (from {})", m.name))
        .unwrap_or_default();
    err(&key, format!("{hint}{origin}"))
}

/// The known name nearest to `f` (a typo: at most 2 edits, or a third of
/// its length), if there is one.
fn closest<'a>(f: &str, known: &'a [&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    let limit = (f.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (distance(f, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

/// The default of the key at `path` when it is a duration (so a bare
/// number there gets a useful hint).
fn default_duration(path: &[String]) -> Option<String> {
    let mut v = serde_json::to_value(RawConfig::default()).ok()?;
    for p in path {
        v = v.get(p)?.clone();
    }
    let s = v.as_str()?;
    humantime::parse_duration(s).ok().map(|_| s.to_string())
}

const SECTIONS: [&str; 10] = [
    "kafka",
    "database",
    "batch",
    "flow",
    "retry",
    "rules",
    "metrics",
    "log",
    "dlq",
    "change_log",
];

/// Names that look like configuration overrides but miss the double
/// underscore (GOVSYNC_KAFKA_BOOTSTRAP_SERVERS) would be ignored silently:
/// refuse them instead.
pub(super) fn check_env_names() -> Result<(), ConfigError> {
    const NOT_CONFIG: [&str; 3] = [
        "GOVSYNC_KAFKA_SASL_PASSWORD",
        "GOVSYNC_DB_PASSWORD",
        "GOVSYNC_CONFIG",
    ];
    for (name, _) in std::env::vars() {
        let Some(rest) = name.strip_prefix("GOVSYNC_") else {
            continue;
        };
        if rest.contains("__") || NOT_CONFIG.contains(&name.as_str()) {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        if let Some(section) = SECTIONS
            .iter()
            .find(|s| lower.starts_with(&format!("{s}_")))
        {
            let key = &lower[section.len() + 1..];
            return Err(err(
                &format!("{section}.{key}"),
                format!(
                    "environment variable {name} is not read: write GOVSYNC_{}__{} (two underscores between section and key)",
                    section.to_ascii_uppercase(),
                    key.to_ascii_uppercase()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_get_a_suggestion() {
        let known = ["bootstrap_servers", "group_id", "dlq_topic"];
        assert_eq!(
            closest("bootstrap_server", &known),
            Some("bootstrap_servers")
        );
        assert_eq!(closest("dlq_topc", &known), Some("dlq_topic"));
        assert_eq!(closest("colour", &known), None);
        assert_eq!(
            default_duration(&["batch".into(), "max_wait".into()]).as_deref(),
            Some("500ms")
        );
        assert_eq!(default_duration(&["batch".into(), "min_size".into()]), None);
    }
}
