//! `govsync review list`, `show`, `decide` and `hash-password`: the review
//! items (`govsync_review_item`) from the database, for a person at a
//! terminal. The list masks personal data (ID and phone numbers, addresses)
//! in the proposals; `show` prints one item's proposal in full, as a
//! reviewer needs it; `decide` publishes a decision as the console does
//! ([`super::console::decide`]).

use std::io::Write;

use serde_json::Value;

use super::console::decide::{self, Publisher, Request};
use super::console::{auth, store};
use crate::config::Config;
use crate::review::Verdict;
use crate::sink::{self, StoredReviewItem};
use crate::telemetry::mask;

/// `govsync review list`: the items of `status` (all when `None`), oldest
/// first, at most `limit`; JSON lines with `json`.
pub async fn list(
    cfg: &Config,
    status: Option<&str>,
    limit: usize,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let db = sink::connect(&cfg.database).await?;
    let items = db.review_items(status).await?;
    db.close().await;
    print_list(&items, limit, json, out)?;
    Ok(())
}

/// `govsync review show EVENT_ID`: one item with its proposal in full
/// (one JSON object with `json`). Returns false when there is no such item.
pub async fn show(
    cfg: &Config,
    event_id: &str,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let db = sink::connect(&cfg.database).await?;
    let found = db.review_item(event_id).await;
    db.close().await;
    match found? {
        Some(i) if json => {
            let item = store::Item::from(i);
            writeln!(out, "{}", item_json(&item))?;
            Ok(true)
        }
        Some(i) => {
            print_item(&i, out)?;
            Ok(true)
        }
        None => {
            writeln!(out, "no review item for event {event_id}")?;
            Ok(false)
        }
    }
}

/// An item as one JSON object, personal data in full (like `show`).
pub fn item_json(i: &store::Item) -> Value {
    serde_json::json!({
        "event_id": i.event_id,
        "customer_id": i.customer_id,
        "data_type": i.data_type,
        "region_code": i.region_code,
        "reason": i.reason,
        "priority": i.priority,
        "status": i.status,
        "superseded_by": i.superseded_by,
        "row_version": i.row_version,
        "proposed": i.proposed,
        "current_row": i.current,
        "details": i.details,
        "governed_at": i.governed_at,
        "created_at": i.created_at,
        "decided_by": i.decided_by,
        "decided_at": i.decided_at,
        "decision": i.decision,
        "comment": i.comment,
    })
}

/// What `govsync review decide` was asked.
pub struct DecideArgs<'a> {
    pub event_id: &'a str,
    pub verdict: &'a str,
    pub reviewer: &'a str,
    pub comment: Option<String>,
    /// `field=value`.
    pub set: &'a [String],
}

/// `govsync review decide`: checks the decision as the console does and
/// publishes it; prints the decision id, or why it was refused (then
/// returns false and publishes nothing).
pub async fn decide(cfg: &Config, a: DecideArgs<'_>, out: &mut impl Write) -> anyhow::Result<bool> {
    let verdict = Verdict::parse(a.verdict).ok_or_else(|| {
        anyhow::anyhow!(
            "`{}` is not a verdict: use approve, reject or correct",
            a.verdict
        )
    })?;
    if !auth::valid_name(a.reviewer) {
        anyhow::bail!(
            "--reviewer `{}` is not a reviewer name (no spaces, `:` or `<>&\"'`)",
            a.reviewer
        );
    }
    if verdict != Verdict::Correct && !a.set.is_empty() {
        anyhow::bail!("--set belongs to correct decisions only");
    }
    let set = a
        .set
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--set `{kv}`: expected field=value"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let db = sink::connect(&cfg.database).await?;
    let item = store::item(db.as_ref(), a.event_id).await;
    db.close().await;
    let Some(item) = item? else {
        writeln!(out, "no review item for event {}", a.event_id)?;
        return Ok(false);
    };
    let req = Request {
        verdict,
        set: &set,
        reviewer: a.reviewer,
        comment: a.comment,
    };
    let d = match decide::build(&item, req, &cfg.rules, chrono::Utc::now().date_naive()) {
        Ok(d) => d,
        Err(reason) => {
            writeln!(out, "refused, nothing published: {reason}")?;
            return Ok(false);
        }
    };
    let publisher = Publisher::new(&cfg.kafka)?;
    publisher.publish(&d, &item.customer_id).await?;
    writeln!(out, "{}", d.decision_id)?;
    Ok(true)
}

/// `govsync review hash-password`: the PHC string of `password`.
pub fn hash_password(password: &str, out: &mut impl Write) -> anyhow::Result<()> {
    if password.is_empty() {
        anyhow::bail!("the password is empty (type it on standard input)");
    }
    let hash = auth::hash_password(password).map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
    writeln!(out, "{hash}")?;
    Ok(())
}

/// A proposal with its personal data masked (the list's view).
fn masked_proposal(i: &StoredReviewItem) -> Value {
    serde_json::from_str::<Value>(&i.proposed)
        .map(|v| mask::json(&v))
        .unwrap_or(Value::Null)
}

/// The list: one line per item, with counts by status at the end.
pub fn print_list(
    items: &[StoredReviewItem],
    limit: usize,
    json: bool,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let shown = &items[..items.len().min(limit)];
    if json {
        for i in shown {
            let line = serde_json::json!({
                "event_id": i.event_id,
                "customer_id": i.customer_id,
                "data_type": i.data_type,
                "reason": i.reason,
                "priority": i.priority,
                "status": i.status,
                "superseded_by": i.superseded_by,
                "row_version": i.row_version,
                "proposed": masked_proposal(i),
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<38} {:<22} {:<8} {:<20} {:<8} {:<11} proposed (masked)",
        "event", "customer", "type", "reason", "priority", "status"
    )?;
    for i in shown {
        writeln!(
            out,
            "{:<38} {:<22} {:<8} {:<20} {:<8} {:<11} {}",
            i.event_id,
            i.customer_id,
            i.data_type,
            i.reason,
            i.priority,
            i.status,
            masked_proposal(i)
        )?;
    }
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for i in items {
        *counts.entry(i.status.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    writeln!(
        out,
        "{} items ({}){}",
        items.len(),
        counts.join(", "),
        if shown.len() < items.len() {
            format!("; first {} shown (--limit)", shown.len())
        } else {
            String::new()
        }
    )
}

/// One item, its proposal in full.
pub fn print_item(i: &StoredReviewItem, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "event        {}", i.event_id)?;
    writeln!(out, "customer     {}", i.customer_id)?;
    writeln!(out, "data type    {}", i.data_type)?;
    writeln!(out, "reason       {}", i.reason)?;
    writeln!(out, "priority     {}", i.priority)?;
    match &i.superseded_by {
        Some(by) => writeln!(out, "status       {} (by {by})", i.status)?,
        None => writeln!(out, "status       {}", i.status)?,
    }
    if let Some(v) = i.row_version {
        writeln!(out, "row version  {v} when raised")?;
    }
    let proposed: Value = serde_json::from_str(&i.proposed).unwrap_or(Value::Null);
    writeln!(out, "proposed")?;
    if let Value::Object(m) = proposed {
        for (k, v) in m {
            writeln!(out, "  {k:<22} {v}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, status: &str) -> StoredReviewItem {
        StoredReviewItem {
            event_id: id.into(),
            customer_id: "CUST_320102_001".into(),
            data_type: "id_card".into(),
            reason: "check_contradiction".into(),
            priority: "high".into(),
            status: status.into(),
            superseded_by: None,
            row_version: Some(3),
            proposed:
                r#"{"id_card":"320102198001011234","phone":"13812345678","quality_score":0.95}"#
                    .into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_list_masks_personal_data_and_counts_by_status() {
        let items = [
            item("e1", "open"),
            item("e2", "superseded"),
            item("e3", "open"),
        ];
        let mut out = Vec::new();
        print_list(&items, 2, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("320102198001011234"), "{text}");
        assert!(!text.contains("13812345678"), "{text}");
        assert!(text.contains("0.95"), "{text}");
        assert!(
            text.contains("e1") && text.contains("e2") && !text.contains("e3 "),
            "{text}"
        );
        assert!(
            text.contains("3 items (2 open, 1 superseded); first 2 shown (--limit)"),
            "{text}"
        );
        let mut out = Vec::new();
        print_list(&items, 10, true, &mut out).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_ne!(lines[0]["proposed"]["id_card"], "320102198001011234");
    }

    #[test]
    fn show_prints_the_proposal_in_full() {
        let mut out = Vec::new();
        print_item(&item("e1", "open"), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"320102198001011234\""), "{text}");
        assert!(text.contains("row version  3 when raised"), "{text}");
    }
}
