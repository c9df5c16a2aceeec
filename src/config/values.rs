//! Checkers for single values: durations, topic names, SQL identifiers, UTC
//! offsets, database URLs; and the host name that stands in for an empty
//! instance id.

use std::time::Duration;

use super::{ConfigError, DbKind, err};

pub(super) fn duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        err(
            key,
            format!("`{s}` is not a duration ({e}); write e.g. \"500ms\", \"2s\" or \"1m\""),
        )
    })
}

pub(super) fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(err(key, "must be greater than zero"))
    } else {
        Ok(d)
    }
}

pub(super) fn topic(key: &str, s: &str) -> Result<String, ConfigError> {
    let ok = !s.is_empty()
        && s.len() <= 249
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(err(
            key,
            format!("`{s}` is not a valid topic name (letters, digits, . _ -, at most 249)"),
        ))
    }
}

pub(super) fn identifier(key: &str, s: &str) -> Result<String, ConfigError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(err(
            key,
            format!(
                "`{s}` is not a plain SQL identifier (letters, digits, _ and one . for a schema)"
            ),
        ))
    }
}

pub(super) fn parse_offset(s: &str) -> Option<chrono::FixedOffset> {
    let s = s.trim();
    if s == "Z" || s == "+00:00" {
        return chrono::FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    // HH:MM, hours up to 14 (the widest offset in use), minutes below 60.
    let (h, m) = rest.split_once(':')?;
    let digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 {
        return None;
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Splits a database URL into kind, URL without password, and password.
pub(super) fn parse_db_url(url: &str) -> Result<(DbKind, String, Option<String>), ConfigError> {
    let key = "database.url";
    let url = url.trim();
    let (scheme, rest) = url.split_once(':').ok_or_else(|| {
        err(
            key,
            format!("`{url}` has no scheme; use postgres://…, sqlite://… or oracle://…"),
        )
    })?;
    let kind = match scheme {
        "postgres" | "postgresql" => DbKind::Postgres,
        "sqlite" => DbKind::Sqlite,
        "oracle" => DbKind::Oracle,
        other => {
            return Err(err(
                key,
                format!("unknown database `{other}`; use postgres://…, sqlite://… or oracle://…"),
            ));
        }
    };
    if kind == DbKind::Sqlite {
        let path = rest.trim_start_matches("//");
        if path.is_empty() {
            return Err(err(
                key,
                "sqlite URL has no file; write sqlite://path/to/file.db",
            ));
        }
        return Ok((kind, url.to_string(), None));
    }
    let Some(authority_path) = rest.strip_prefix("//") else {
        return Err(err(
            key,
            format!("`{url}` is not scheme://user@host:port/name"),
        ));
    };
    let (authority, path) = authority_path
        .split_once('/')
        .unwrap_or((authority_path, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if hostport.is_empty() {
        return Err(err(key, format!("`{url}` has no host")));
    }
    if let Some((_, port)) = hostport.rsplit_once(':')
        && port.parse::<u16>().is_err()
    {
        return Err(err(
            key,
            format!(
                "`{port}` is not a port number; write {scheme}://user@host:port/name with a numeric port (PostgreSQL: 5432)"
            ),
        ));
    }
    if path.is_empty() {
        return Err(err(
            key,
            format!("`{url}` names no database/service (…/name)"),
        ));
    }
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => (Some(user), Some(pw.to_string())),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    let clean = match user {
        Some(u) => format!("{scheme}://{u}@{hostport}/{path}"),
        None => format!("{scheme}://{hostport}/{path}"),
    };
    Ok((kind, clean, password))
}

pub(super) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(s) = std::str::from_utf8(&buf[..end])
            && !s.is_empty()
        {
            return s.to_string();
        }
    }
    "govsync".to_string()
}

/// The TLS policy for a PostgreSQL URL: a server on another host must be
/// verified (`sslmode=verify-full`, or `verify-ca`); a URL without `sslmode`
/// gets `verify-full`; `disable`, `allow`, `prefer` and `require` (which do
/// not check the certificate) need `database.allow_insecure_tls`. This
/// machine (127.0.0.1, ::1, localhost) is left as the URL says. Returns the
/// URL to use and whether it is an allowed insecure one (a startup
/// warning).
pub(super) fn postgres_tls(url: &str, allow_insecure: bool) -> Result<(String, bool), ConfigError> {
    let key = "database.url";
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = after_scheme.split(['/', '?']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(rest) = hostport.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    if matches!(host, "127.0.0.1" | "::1" | "localhost" | "") {
        return Ok((url.to_string(), false));
    }
    let query = url.split_once('?').map(|(_, q)| q);
    let mode = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("sslmode="))
            .map(str::to_string)
    });
    match mode.as_deref() {
        None => {
            let sep = if query.is_some() { '&' } else { '?' };
            Ok((format!("{url}{sep}sslmode=verify-full"), false))
        }
        Some("verify-full" | "verify-ca") => Ok((url.to_string(), false)),
        Some(m @ ("disable" | "allow" | "prefer" | "require")) if allow_insecure => {
            let _ = m;
            Ok((url.to_string(), true))
        }
        Some(m @ ("disable" | "allow" | "prefer" | "require")) => Err(err(
            key,
            format!(
                "sslmode={m} does not verify the server's certificate of {host}: use \
                 sslmode=verify-full (with sslrootcert=/path/ca.pem for a private CA), or set \
                 database.allow_insecure_tls = true to accept that"
            ),
        )),
        Some(other) => Err(err(
            key,
            format!(
                "sslmode={other} is not a PostgreSQL sslmode (disable, allow, prefer, require, \
                 verify-ca, verify-full)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_urls() {
        let (k, u, p) = parse_db_url("postgres://govsync:secret@127.0.0.1:5432/govsync").unwrap();
        assert_eq!(
            (k, u.as_str(), p.as_deref()),
            (
                DbKind::Postgres,
                "postgres://govsync@127.0.0.1:5432/govsync",
                Some("secret")
            )
        );
        let (k, _, _) = parse_db_url("oracle://govsync@db:1521/FREEPDB1").unwrap();
        assert_eq!(k, DbKind::Oracle);
        assert!(parse_db_url("postgres://127.0.0.1:port/x").is_err());
        let (k, u, p) = parse_db_url("oracle://govsync@db:1521/FREEPDB1").unwrap();
        assert_eq!(
            (k, u.as_str(), p),
            (DbKind::Oracle, "oracle://govsync@db:1521/FREEPDB1", None)
        );
        assert!(parse_db_url("sqlite://").is_err());
    }

    #[test]
    fn offsets_are_hh_mm_within_range() {
        let east = |h: i32, m: i32| chrono::FixedOffset::east_opt(h * 3600 + m * 60);
        assert_eq!(parse_offset("+08:00"), east(8, 0));
        assert_eq!(parse_offset("-03:30"), east(-3, -30));
        assert_eq!(parse_offset("Z"), east(0, 0));
        assert_eq!(parse_offset(" +05:45 "), east(5, 45));
        for bad in [
            "+08:99", "+15:00", "+8:00", "+08:-30", "08:00", "+08", "+0a:00", "",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad:?}");
        }
    }
}
