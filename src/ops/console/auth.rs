//! Who may decide: the reviewers file (`name:argon2-hash` per line), the
//! trusted reverse-proxy header, the in-memory session store behind the
//! session cookie, and the CSRF token each session carries.
//!
//! A session is a random 256-bit token in an `HttpOnly`, `SameSite=Strict`
//! cookie; the server keeps the reviewer's name, the session's CSRF token
//! and its expiry. Every form carries the CSRF token and every POST is
//! refused (403) unless it matches the session's, compared in constant
//! time. The sign-in form, made before any session exists, carries a token
//! that must match a short-lived sign-in cookie (double submit).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::HeaderMap;
use rand::RngCore;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "govsync_session";
/// The sign-in form's double-submit cookie.
pub const SIGNIN_COOKIE: &str = "govsync_signin";
/// How long a session lasts after sign-in (a working day); then the
/// reviewer signs in again.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// A reviewers file that cannot be used, with the line at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReviewersError {
    #[error("cannot read the reviewers file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("reviewers file line {line}: {message}")]
    Line { line: usize, message: String },
}

/// The reviewers who may sign in with a password, and their hashes.
#[derive(Debug, Default)]
pub struct Reviewers {
    hashes: HashMap<String, String>,
}

impl Reviewers {
    pub fn load(path: &Path) -> Result<Reviewers, ReviewersError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReviewersError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Reviewers::parse(&text)
    }

    /// One `name:hash` per line; blank lines and lines starting with `#`
    /// are skipped. The hash is a PHC string of argon2 (as
    /// `govsync review hash-password` prints).
    pub fn parse(text: &str) -> Result<Reviewers, ReviewersError> {
        let mut hashes = HashMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let bad = |message: String| ReviewersError::Line { line, message };
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (name, hash) = l
                .split_once(':')
                .ok_or_else(|| bad("expected `name:argon2-hash`".into()))?;
            let name = name.trim();
            if !valid_name(name) {
                return Err(bad(format!(
                    "`{name}` is not a reviewer name (1 to 200 characters, no spaces, `:` or `<>&\"'`)"
                )));
            }
            let parsed = PasswordHash::new(hash.trim()).map_err(|e| {
                bad(format!(
                    "the hash of {name} is not a PHC string ({e}); make one with `govsync review hash-password`"
                ))
            })?;
            if !parsed.algorithm.as_str().starts_with("argon2") {
                return Err(bad(format!(
                    "the hash of {name} is {}, not argon2",
                    parsed.algorithm
                )));
            }
            if hashes
                .insert(name.to_string(), hash.trim().to_string())
                .is_some()
            {
                return Err(bad(format!("{name} is listed twice")));
            }
        }
        Ok(Reviewers { hashes })
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `password` is `name`'s. An unknown name costs a hash too, so
    /// the answer's time does not say which names exist. CPU-heavy (tens of
    /// milliseconds): call it off the async workers.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        match self.hashes.get(name) {
            Some(h) => verify_hash(h, password),
            None => {
                let _ = verify_hash(dummy_hash(), password);
                false
            }
        }
    }
}

/// A hash of a random password nobody knows, verified for unknown names.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&token()).unwrap_or_default())
}

fn verify_hash(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A reviewer name as the console and the decisions accept it.
pub fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=200).contains(&n)
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || ":<>&\"'".contains(c))
}

/// An argon2id PHC string of `password` with a fresh random salt
/// (`govsync review hash-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A fresh random token (256 bits, hex).
pub fn token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Equality that takes the same time wherever the strings differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the whole console.
/// `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        max_age.as_secs()
    )
}

/// A signed-in reviewer.
#[derive(Debug, Clone)]
pub struct Session {
    pub reviewer: String,
    /// Every form of this session carries it; a POST without it is refused.
    pub csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether a form's token is this session's.
    pub fn csrf_ok(&self, form_token: Option<&str>) -> bool {
        form_token.is_some_and(|t| same(t, &self.csrf))
    }
}

/// The server-side sessions, by token. In memory: a restart signs every
/// reviewer out, which is acceptable for a console (nothing is lost).
#[derive(Debug)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
    lifetime: Duration,
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            by_token: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    /// Starts a session for `reviewer`; returns its token (the cookie).
    pub fn create(&self, reviewer: &str) -> (String, Session) {
        let token = token();
        let session = Session {
            reviewer: reviewer.to_string(),
            csrf: self::token(),
            expires: Instant::now() + self.lifetime,
        };
        let mut map = self.by_token.lock().expect("sessions lock");
        // Expired sessions go whenever one is made, which bounds the map by
        // the sign-ins of one lifetime.
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(token.clone(), session.clone());
        (token, session)
    }

    /// The live session of a token.
    pub fn get(&self, token: &str) -> Option<Session> {
        let map = self.by_token.lock().expect("sessions lock");
        map.get(token)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    pub fn remove(&self, token: &str) {
        self.by_token.lock().expect("sessions lock").remove(token);
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        let r = Reviewers::parse(&format!("# reviewers\n\nwang.li:{h}\n")).unwrap();
        assert_eq!(r.len(), 1);
        assert!(r.verify("wang.li", "correct horse"));
        assert!(!r.verify("wang.li", "wrong"));
        assert!(!r.verify("li.na", "correct horse"));
        // A fresh salt each time.
        assert_ne!(h, hash_password("correct horse").unwrap());
    }

    #[test]
    fn a_broken_reviewers_file_names_the_line() {
        let h = hash_password("x").unwrap();
        let cases = [
            (format!("ok:{h}\nno colon here\n"), 2, "name:argon2-hash"),
            (format!("\n\nwang li:{h}"), 3, "not a reviewer name"),
            ("a:not-a-hash".to_string(), 1, "not a PHC string"),
            (
                "a:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_string(),
                1,
                "not argon2",
            ),
            (format!("a:{h}\n# c\na:{h}"), 3, "listed twice"),
            (format!(":{h}"), 1, "not a reviewer name"),
        ];
        for (text, line, says) in cases {
            let e = Reviewers::parse(&text).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("reviewers file line {line}: ")) && msg.contains(says),
                "{text:?}: {msg}"
            );
        }
    }

    #[test]
    fn sessions_expire_and_carry_their_own_csrf_token() {
        let s = Sessions::new(Duration::from_secs(60));
        let (t1, a) = s.create("wang.li");
        let (t2, b) = s.create("li.na");
        assert_ne!(t1, t2);
        assert_ne!(a.csrf, b.csrf);
        assert_eq!(s.get(&t1).unwrap().reviewer, "wang.li");
        assert!(a.csrf_ok(Some(&a.csrf)));
        assert!(!a.csrf_ok(Some(&b.csrf)));
        assert!(!a.csrf_ok(None));
        assert!(!a.csrf_ok(Some("")));
        s.remove(&t1);
        assert!(s.get(&t1).is_none());
        let short = Sessions::new(Duration::ZERO);
        let (t, _) = short.create("wang.li");
        assert!(short.get(&t).is_none(), "an expired session is gone");
        assert!(s.get("nonsense").is_none());
    }

    #[test]
    fn cookies_are_read_from_the_header_and_set_strict() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; govsync_session=abc".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        let c = set_cookie(SESSION_COOKIE, "abc", SESSION_LIFETIME);
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
