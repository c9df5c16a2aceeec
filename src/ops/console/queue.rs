//! The queue: review items filtered by region, data type, reason, priority
//! and age, oldest high-priority first, with counts; personal data masked.
//! Bulk approve or reject of the selected items.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};

use super::decide::{Request, build};
use super::store::{self, Item};
use super::{App, authorize, field, form_fields, item_href, render, to_signin, unavailable, who};
use crate::review::Verdict;
use crate::telemetry::mask;

/// Rows shown at most; the counts cover every match.
const PAGE_ROWS: usize = 200;

/// The queue's filters, from the query string. Empty means any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub region: String,
    pub data_type: String,
    pub reason: String,
    pub priority: String,
    /// Only items at least this old (`1h`, `4h`, `1d`).
    pub min_age: String,
    /// `open` unless asked otherwise; `all` for every status.
    pub status: String,
}

impl Filter {
    pub fn parse(query: Option<&str>) -> Filter {
        let mut f = Filter {
            status: "open".into(),
            ..Filter::default()
        };
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = v.trim().to_string();
            match k.as_ref() {
                "region" => f.region = v,
                "data_type" => f.data_type = v,
                "reason" => f.reason = v,
                "priority" => f.priority = v,
                "age" => f.min_age = v,
                "status" if !v.is_empty() => f.status = v,
                _ => {}
            }
        }
        f
    }

    fn min_age(&self) -> Option<Duration> {
        humantime::parse_duration(&self.min_age).ok()
    }

    pub fn matches(&self, i: &Item, now: DateTime<Utc>) -> bool {
        let eq = |want: &str, have: &str| want.is_empty() || want == have;
        eq(&self.region, &i.region_code)
            && eq(&self.data_type, &i.data_type)
            && eq(&self.reason, &i.reason)
            && eq(&self.priority, &i.priority)
            && (self.status == "all" || self.status == i.status)
            && match self.min_age() {
                Some(min) => i
                    .created_at
                    .and_then(|t| (now - t).to_std().ok())
                    .is_some_and(|age| age >= min),
                None => true,
            }
    }
}

/// High first, then medium, then low.
fn priority_rank(p: &str) -> u8 {
    match p {
        "high" => 0,
        "medium" => 1,
        "low" => 2,
        _ => 3,
    }
}

/// The matching items, oldest high-priority first.
pub fn select(items: Vec<Item>, f: &Filter, now: DateTime<Utc>) -> Vec<Item> {
    let mut out: Vec<Item> = items.into_iter().filter(|i| f.matches(i, now)).collect();
    out.sort_by(|a, b| {
        priority_rank(&a.priority)
            .cmp(&priority_rank(&b.priority))
            .then(a.created_at.cmp(&b.created_at))
            .then(a.event_id.cmp(&b.event_id))
    });
    out
}

/// One line of the queue, masked.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub event_id: String,
    /// The item page's address.
    pub href: String,
    pub customer_id: String,
    pub data_type: String,
    pub region: String,
    pub reason: String,
    pub priority: String,
    pub status: String,
    pub age: String,
    /// The proposal, personal data masked: `field: value` pairs.
    pub proposed: String,
}

/// `3d 4h`, `2h 5m`, `12m`.
pub fn age(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(t) = since else { return "-".into() };
    let m = (now - t).num_minutes().max(0);
    let (d, h, m) = (m / 1440, m / 60 % 24, m % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

pub fn row(i: &Item, now: DateTime<Utc>) -> Row {
    let masked = mask::json(&serde_json::Value::Object(i.proposed.clone()));
    let proposed = masked
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Row {
        event_id: i.event_id.clone(),
        href: item_href(&i.event_id),
        customer_id: i.customer_id.clone(),
        data_type: i.data_type.clone(),
        region: i.region_code.clone(),
        reason: i.reason.clone(),
        priority: i.priority.clone(),
        status: i.status.clone(),
        age: age(i.created_at, now),
        proposed,
    }
}

#[derive(Template)]
#[template(path = "console/queue.html")]
struct Queue<'a> {
    reviewer: Option<&'a str>,
    csrf: &'a str,
    filter: &'a Filter,
    regions: Vec<String>,
    rows: Vec<Row>,
    matching: usize,
    /// Open items under any filter (known when open items were read).
    open_total: Option<usize>,
    by_priority: Vec<(&'static str, usize)>,
    notice: Option<String>,
}

/// GET /: the queue.
pub(super) async fn page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some((session, cookie)) = who(&app, &headers) else {
        return to_signin();
    };
    let filter = Filter::parse(query.as_deref());
    // Only the status asked for is read: decided items pile up, open ones
    // are what reviewers work on.
    let status = (filter.status != "all").then_some(filter.status.as_str());
    let items = match store::items(app.db.as_ref(), status).await {
        Ok(i) => i,
        Err(e) => return unavailable("reading the review items failed", &e),
    };
    let now = Utc::now();
    let regions: BTreeSet<String> = items.iter().map(|i| i.region_code.clone()).collect();
    let open_total = matches!(filter.status.as_str(), "open" | "all")
        .then(|| items.iter().filter(|i| i.status == "open").count());
    let selected = select(items, &filter, now);
    let by_priority = ["high", "medium", "low"]
        .into_iter()
        .map(|p| (p, selected.iter().filter(|i| i.priority == p).count()))
        .collect();
    let notice = notice(query.as_deref());
    let page = Queue {
        reviewer: Some(&session.reviewer),
        csrf: &session.csrf,
        filter: &filter,
        regions: regions.into_iter().filter(|r| !r.is_empty()).collect(),
        matching: selected.len(),
        rows: selected
            .iter()
            .take(PAGE_ROWS)
            .map(|i| row(i, now))
            .collect(),
        open_total,
        by_priority,
        notice,
    };
    render(StatusCode::OK, &page, cookie)
}

/// What the last bulk decision did (`?published=N&refused=M`).
fn notice(query: Option<&str>) -> Option<String> {
    let mut published = None;
    let mut refused = 0usize;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "published" => published = v.parse::<usize>().ok(),
            "refused" => refused = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    let n = published?;
    Some(match refused {
        0 => format!("{n} decision(s) published; items close when govsync applies them."),
        r => format!(
            "{n} decision(s) published; {r} refused (the items were no longer open or the broker failed)."
        ),
    })
}

/// POST /bulk: `verdict` (approve or reject) on every `event` selected.
pub(super) async fn bulk(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form_fields(&body);
    let session = match authorize(&app, &headers, field(&fields, "csrf")) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let verdict = match field(&fields, "verdict").and_then(Verdict::parse) {
        Some(v @ (Verdict::Approve | Verdict::Reject)) => v,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "bulk decisions are approve or reject\n",
            )
                .into_response();
        }
    };
    let chosen: BTreeSet<&str> = fields
        .iter()
        .filter(|(k, _)| k == "event")
        .map(|(_, v)| v.as_str())
        .collect();
    let items = match store::items(app.db.as_ref(), Some("open")).await {
        Ok(i) => i,
        Err(e) => return unavailable("reading the review items failed", &e),
    };
    let today = Utc::now().date_naive();
    let (mut published, mut refused) = (0usize, chosen.len());
    for item in items
        .iter()
        .filter(|i| chosen.contains(i.event_id.as_str()))
    {
        let req = Request {
            verdict,
            set: &[],
            reviewer: &session.reviewer,
            comment: field(&fields, "comment").map(str::to_string),
        };
        let Ok(d) = build(item, req, &app.cfg.rules, today) else {
            continue;
        };
        match app.publisher.publish(&d, &item.customer_id).await {
            Ok(()) => {
                tracing::info!(event_id = %item.event_id, decision_id = %d.decision_id,
                    reviewer = %session.reviewer, verdict = verdict.as_str(), "decision published (bulk)");
                published += 1;
                refused -= 1;
            }
            Err(e) => {
                tracing::warn!(event_id = %item.event_id, error = %e, "publishing a decision failed");
            }
        }
    }
    Redirect::to(&format!("/?published={published}&refused={refused}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(id: &str, priority: &str, region: &str, hours_old: i64) -> Item {
        let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
        Item {
            event_id: id.into(),
            customer_id: format!("CUST_{id}"),
            data_type: "id_card".into(),
            region_code: region.into(),
            reason: "flagged".into(),
            priority: priority.into(),
            status: "open".into(),
            superseded_by: None,
            row_version: None,
            proposed: json!({"id_card": "320102199001011231", "phone": "13812345678",
                "address": "江苏省南京市玄武区中山路123号", "quality_score": 0.25})
            .as_object()
            .unwrap()
            .clone(),
            current: None,
            details: vec![],
            governed_at: None,
            created_at: Some(now - chrono::Duration::hours(hours_old)),
            decided_by: None,
            decided_at: None,
            decision: None,
            comment: None,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_queue_puts_old_high_priority_first() {
        let items = vec![
            item("a", "low", "320102", 50),
            item("b", "high", "320102", 1),
            item("c", "high", "310101", 5),
            item("d", "medium", "320102", 9),
        ];
        let ids = |v: Vec<Item>| v.into_iter().map(|i| i.event_id).collect::<Vec<_>>();
        let all = Filter::parse(None);
        assert_eq!(
            ids(select(items.clone(), &all, now())),
            ["c", "b", "d", "a"]
        );
        let f = Filter::parse(Some("region=320102&age=4h"));
        assert_eq!(ids(select(items.clone(), &f, now())), ["d", "a"]);
        let f = Filter::parse(Some("priority=high&data_type=id_card&reason=flagged"));
        assert_eq!(ids(select(items.clone(), &f, now())), ["c", "b"]);
        let f = Filter::parse(Some("reason=conflict"));
        assert!(select(items.clone(), &f, now()).is_empty());
        let mut closed = items.clone();
        closed[1].status = "approved".into();
        assert_eq!(ids(select(closed.clone(), &all, now())), ["c", "d", "a"]);
        let f = Filter::parse(Some("status=all"));
        assert_eq!(select(closed, &f, now()).len(), 4);
        // An age that does not parse filters nothing.
        let f = Filter::parse(Some("age=soon"));
        assert_eq!(select(items, &f, now()).len(), 4);
    }

    #[test]
    fn queue_rows_mask_personal_data() {
        let r = row(&item("a", "high", "320102", 26), now());
        assert!(!r.proposed.contains("320102199001011231"), "{}", r.proposed);
        assert!(!r.proposed.contains("13812345678"), "{}", r.proposed);
        assert!(!r.proposed.contains("中山路123号"), "{}", r.proposed);
        assert!(r.proposed.contains("quality_score: 0.25"), "{}", r.proposed);
        assert!(r.proposed.contains("phone: 138****5678"), "{}", r.proposed);
        assert_eq!(r.age, "1d 2h");
        assert_eq!(
            age(Some(now() - chrono::Duration::minutes(65)), now()),
            "1h 5m"
        );
        assert_eq!(age(None, now()), "-");
    }

    #[test]
    fn the_bulk_notice_counts_what_was_published() {
        assert_eq!(notice(None), None);
        assert!(
            notice(Some("published=3&refused=0"))
                .unwrap()
                .starts_with("3 decision(s) published;")
        );
        assert!(
            notice(Some("published=2&refused=1"))
                .unwrap()
                .contains("1 refused")
        );
    }
}
