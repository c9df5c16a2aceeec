//! Masking of personal data for logs and metric labels. Every log line or
//! label that could carry an ID-card number, a phone number or an address
//! goes through one of these.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
