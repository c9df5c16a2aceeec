//! Masking of personal data for logs, metric labels and what operators
//! are shown (`govsync dlq inspect` samples). Every log line, label or
//! sample that could carry an ID-card number, a phone number or an address
//! goes through one of these.

use serde_json::Value;

/// `320102199001011232` → `320102********1232`.
pub fn id_card(s: &str) -> String {
    keep_ends(s, 6, 4)
}

/// `13812345678` → `138****5678`.
pub fn phone(s: &str) -> String {
    keep_ends(s, 3, 4)
}

/// Keeps the administrative levels (up to and including the district),
/// masks the street part: `江苏省南京市玄武区中山路123号` → `江苏省南京市玄武区***`.
pub fn address(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    // The last district-level marker within the first 16 characters.
    let cut = chars
        .iter()
        .take(16)
        .rposition(|c| matches!(c, '区' | '县' | '旗'))
        .map(|i| i + 1)
        .unwrap_or_else(|| chars.len().min(3));
    let kept: String = chars[..cut.min(chars.len())].iter().collect();
    if cut >= chars.len() {
        kept
    } else {
        format!("{kept}***")
    }
}

fn keep_ends(s: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= head + tail {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', chars.len() - head - tail));
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Masks every run of 7 or more digits (ID numbers, phone numbers) in free
/// text, keeping the first 3 and last 4: a safety net for messages built
/// from values (e.g. a database error quoting a row).
pub fn digits_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= 7 {
            out.push_str(&keep_ends(run, 3, 4));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || ((c == 'X' || c == 'x') && run.chars().count() == 17) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A copy of an event with its personal data masked: ID-card and phone
/// numbers, addresses, names, birth dates, exact coordinates; every other
/// string has its long digit runs masked. `customer_id` is kept.
pub fn json(v: &Value) -> Value {
    let mut v = v.clone();
    json_in_place(None, &mut v);
    v
}

fn json_in_place(key: Option<&str>, v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                json_in_place(Some(k.as_str()), x);
            }
        }
        Value::Array(a) => {
            for x in a {
                json_in_place(key, x);
            }
        }
        Value::String(s) => *s = field(key.unwrap_or(""), s),
        Value::Number(n) if matches!(key, Some("latitude" | "longitude")) => {
            // About 1 km: enough to see the region, not the house.
            if let Some(f) = n.as_f64()
                && let Some(r) = serde_json::Number::from_f64((f * 100.0).round() / 100.0)
            {
                *n = r;
            }
        }
        _ => {}
    }
}

fn field(key: &str, s: &str) -> String {
    match key {
        "customer_id" => s.to_string(),
        "address" | "standardized_address" => address(s),
        "id_card" => id_card(s),
        "phone" => phone(s),
        "name" => {
            let mut c = s.chars();
            match c.next() {
                Some(first) => format!("{first}{}", "*".repeat(c.count())),
                None => String::new(),
            }
        }
        "extracted_date" => match s.split_once('-') {
            Some((year, _)) => format!("{year}-**-**"),
            None => "*".repeat(s.chars().count()),
        },
        _ => text(s),
    }
}

/// Free text: long digit runs masked (ID and phone numbers), and runs of
/// non-ASCII text (addresses, names) cut after their district or first
/// three characters.
pub fn text(s: &str) -> String {
    let digits = digits_in(s);
    let mut out = String::with_capacity(digits.len());
    let mut run = String::new();
    for c in digits.chars() {
        if c.is_ascii() {
            if !run.is_empty() {
                out.push_str(&non_ascii_run(&run));
                run.clear();
            }
            out.push(c);
        } else {
            run.push(c);
        }
    }
    if !run.is_empty() {
        out.push_str(&non_ascii_run(&run));
    }
    out
}

fn non_ascii_run(run: &str) -> String {
    if run.chars().count() <= 4 {
        run.to_string()
    } else {
        address(run)
    }
}

/// The first `chars` characters of a value that is not JSON: control
/// characters escaped, masked as [`text`], `…` when cut.
pub fn prefix(bytes: &[u8], chars: usize) -> String {
    let lossy = String::from_utf8_lossy(bytes);
    let mut prefix = String::new();
    for c in lossy.chars().take(chars) {
        if c.is_control() {
            prefix.extend(c.escape_default());
        } else {
            prefix.push(c);
        }
    }
    let more = if lossy.chars().count() > chars {
        "…"
    } else {
        ""
    };
    format!("{}{more}", text(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks() {
        assert_eq!(id_card("32010219900101123X"), "320102********123X");
        assert_eq!(phone("13812345678"), "138****5678");
        assert_eq!(
            address("江苏省南京市玄武区中山路123号"),
            "江苏省南京市玄武区***"
        );
        assert_eq!(address("北京市朝阳区建国路88号"), "北京市朝阳区***");
        assert_eq!(address("某地"), "某地");
        assert_eq!(phone("123"), "***");
    }

    #[test]
    fn digits_in_text() {
        let s = digits_in("row 32010219900101123X has phone 13812345678, batch 42");
        assert_eq!(s, "row 320***********123X has phone 138****5678, batch 42");
        assert!(!s.contains("13812345678"));
    }

    #[test]
    fn samples_are_masked() {
        let e = json!({
            "customer_id": "CUST_320102_0000001",
            "original_data": {"address": "江苏南京玄武区中山路123", "id_card": "32010219900101123X",
                              "phone": "13812345678", "name": "张伟"},
            "governance_result": {
                "standardized_address": "江苏省南京市玄武区中山路123号",
                "suggested_correction": "320102199001011232",
                "geocoding_result": {"latitude": 32.058123, "longitude": 118.796912},
                "birth_date_analysis": {"extracted_date": "1990-01-01"},
                "issues": ["号码 13812345678 无效"]
            }
        });
        let m = json(&e);
        let text = m.to_string();
        for secret in [
            "13812345678",
            "32010219900101123X",
            "320102199001011232",
            "中山路",
            "张伟",
            "1990-01-01",
            "32.058123",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(m["customer_id"], "CUST_320102_0000001");
        assert_eq!(m["original_data"]["id_card"], "320102********123X");
        assert_eq!(m["original_data"]["phone"], "138****5678");
        assert_eq!(
            m["governance_result"]["standardized_address"],
            "江苏省南京市玄武区***"
        );
        assert_eq!(m["original_data"]["name"], "张*");
        assert_eq!(
            m["governance_result"]["geocoding_result"]["latitude"],
            32.06
        );
    }
}
