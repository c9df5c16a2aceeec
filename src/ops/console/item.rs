//! The item page: the row as it was when the item was raised beside the
//! proposed values, differences marked; govsync's reasons; what to check
//! for this kind of item; the decision history with refusals; and the
//! approve / reject / correct forms. Personal data in full, here only.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde_json::Value;

use super::decide::{Request, build};
use super::queue::{Filter, age, select};
use super::store::{self, DecisionRecord, Item};
use super::{App, authorize, field, form_fields, item_href, render, to_signin, unavailable, who};
use crate::event::{Column, DataType};
use crate::review::Verdict;

/// One field of the comparison.
pub struct FieldRow {
    pub name: String,
    pub current: String,
    pub proposed: String,
    /// The proposal would change this field.
    pub changed: bool,
}

/// One input of the correction form.
pub struct Input {
    pub name: String,
    pub value: String,
    /// The row's value, shown as a hint.
    pub current: String,
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => String::new(),
        Some(Value::Null) => "(empty)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The proposed fields first, then the rest of the row.
pub fn compare(i: &Item) -> Vec<FieldRow> {
    let empty = serde_json::Map::new();
    let current = i.current.as_ref().unwrap_or(&empty);
    let mut rows: Vec<FieldRow> = i
        .proposed
        .iter()
        .map(|(k, p)| FieldRow {
            name: k.clone(),
            current: show(current.get(k)),
            proposed: show(Some(p)),
            changed: current.get(k) != Some(p),
        })
        .collect();
    rows.extend(
        current
            .iter()
            .filter(|(k, _)| !i.proposed.contains_key(*k))
            .map(|(k, c)| FieldRow {
                name: k.clone(),
                current: show(Some(c)),
                proposed: String::new(),
                changed: false,
            }),
    );
    rows
}

/// What to check, by reason and data type (after the seed's instructions
/// for a failed ID check: confirm with the customer, verify the identity,
/// then update the record).
pub fn instructions(reason: &str, data_type: &str) -> Vec<&'static str> {
    let mut out = vec![match reason {
        "flagged" => {
            "The engine flagged this record for a person (for example a wrong check digit). \
             Confirm the right value with the customer or their documents before deciding."
        }
        "check_contradiction" => {
            "govsync's own check disagrees with the engine's result. Decide which is right: \
             approve writes the engine's proposal, correct writes your value, reject keeps the row."
        }
        "conflict" => {
            "The business changed this row after the engine read it. Compare the current row with \
             the proposal: approve only if the proposal is still right (it replaces the business's \
             change); reject keeps the business's value; correct to combine them."
        }
        _ => "Compare the current row with the proposal before deciding.",
    }];
    out.push(match data_type {
        "id_card" => {
            "ID number: verify it against the paper ID card and the customer's identity; the last \
             character is a check digit (GB 11643, X allowed). A corrected number must pass the check."
        }
        "phone" => {
            "Phone: a mainland mobile number has 11 digits starting with 1; call or text the \
             customer to confirm when in doubt."
        }
        "address" => {
            "Address: it names province, city and district; check the street part against the \
             customer's documents. Coordinates must lie in China."
        }
        _ => "Check the value against the customer's documents.",
    });
    out.push("Then decide: the record is updated when govsync applies your decision.");
    out
}

/// The correction form: the data fields the item's type may write, filled
/// with the proposal where it has them.
pub fn inputs(i: &Item, rules: &crate::event::RuleSet, typed: &[(String, String)]) -> Vec<Input> {
    let Some(dt) = DataType::parse(&i.data_type) else {
        return Vec::new();
    };
    let allowed = rules.allow.get(&dt).cloned().unwrap_or_default();
    allowed
        .into_iter()
        .filter(|c| !c.is_metadata() || *c == Column::ValidationStatus)
        .map(|c| {
            let name = c.name().to_string();
            let value = typed
                .iter()
                .find(|(k, _)| k.strip_prefix("set.") == Some(&name))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| show(i.proposed.get(&name)));
            let current = show(i.current.as_ref().and_then(|m| m.get(&name)));
            Input {
                name,
                value,
                current,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "console/item.html")]
struct ItemPage<'a> {
    reviewer: Option<&'a str>,
    csrf: &'a str,
    item: &'a Item,
    href: String,
    age: String,
    fields: Vec<FieldRow>,
    instructions: Vec<&'static str>,
    history: Vec<DecisionRecord>,
    inputs: Vec<Input>,
    comment: String,
    error: Option<String>,
    notice: Option<String>,
    prev: Option<String>,
    next: Option<String>,
}

/// The item's neighbours in the open queue (for j/k and after a decision).
async fn neighbours(app: &App, event_id: &str) -> (Option<String>, Option<String>) {
    let Ok(items) = store::items(app.db.as_ref(), Some("open")).await else {
        return (None, None);
    };
    let q = select(items, &Filter::parse(None), Utc::now());
    let at = q.iter().position(|i| i.event_id == event_id);
    let link = |i: &Item| item_href(&i.event_id);
    match at {
        Some(n) => (
            n.checked_sub(1).and_then(|p| q.get(p)).map(link),
            q.get(n + 1).map(link),
        ),
        None => (None, q.first().map(link)),
    }
}

struct Shown<'a> {
    status: StatusCode,
    typed: &'a [(String, String)],
    error: Option<String>,
    notice: Option<String>,
}

async fn show_item(
    app: &App,
    session: &super::auth::Session,
    cookie: Option<String>,
    event_id: &str,
    s: Shown<'_>,
) -> Response {
    let item = match store::item(app.db.as_ref(), event_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such review item\n").into_response(),
        Err(e) => return unavailable("reading the review item failed", &e),
    };
    let history = store::decisions(app.db.as_ref(), event_id)
        .await
        .unwrap_or_default();
    let (prev, next) = neighbours(app, event_id).await;
    let page = ItemPage {
        reviewer: Some(&session.reviewer),
        csrf: &session.csrf,
        href: item_href(&item.event_id),
        age: age(item.created_at, Utc::now()),
        fields: compare(&item),
        instructions: instructions(&item.reason, &item.data_type),
        history,
        inputs: inputs(&item, &app.cfg.rules, s.typed),
        comment: field(s.typed, "comment").unwrap_or("").to_string(),
        error: s.error,
        notice: s.notice,
        prev,
        next,
        item: &item,
    };
    render(s.status, &page, cookie)
}

/// GET /item/{event_id}.
pub(super) async fn page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some((session, cookie)) = who(&app, &headers) else {
        return to_signin();
    };
    let notice = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "published")
        .map(|(_, v)| format!("Decision {v} published; the item closes when govsync applies it."));
    let s = Shown {
        status: StatusCode::OK,
        typed: &[],
        error: None,
        notice,
    };
    show_item(&app, &session, cookie, &event_id, s).await
}

/// POST /item/{event_id}/decide: `verdict`, `comment`, `set.<field>`.
pub(super) async fn decide(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let session = match authorize(&app, &headers, field(&fields, "csrf")) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(verdict) = field(&fields, "verdict").and_then(Verdict::parse) else {
        return (
            StatusCode::BAD_REQUEST,
            "verdict is approve, reject or correct\n",
        )
            .into_response();
    };
    let item = match store::item(app.db.as_ref(), &event_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such review item\n").into_response(),
        Err(e) => return unavailable("reading the review item failed", &e),
    };
    let set: Vec<(String, String)> = fields
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("set.").map(|n| (n.to_string(), v.clone())))
        .collect();
    let req = Request {
        verdict,
        set: if verdict == Verdict::Correct {
            &set
        } else {
            &[]
        },
        reviewer: &session.reviewer,
        comment: field(&fields, "comment").map(str::to_string),
    };
    let refused = |reason: String| Shown {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        typed: &fields,
        error: Some(reason),
        notice: None,
    };
    let d = match build(&item, req, &app.cfg.rules, Utc::now().date_naive()) {
        Ok(d) => d,
        Err(reason) => {
            // The reason may quote the typed value: not for the log.
            tracing::info!(event_id = %event_id, reviewer = %session.reviewer,
                verdict = verdict.as_str(), "decision refused before publishing");
            return show_item(&app, &session, None, &event_id, refused(reason)).await;
        }
    };
    if let Err(e) = app.publisher.publish(&d, &item.customer_id).await {
        tracing::warn!(event_id = %event_id, error = %e, "publishing a decision failed");
        let reason =
            format!("the decision could not be published ({e}); nothing was sent, try again");
        return show_item(&app, &session, None, &event_id, refused(reason)).await;
    }
    tracing::info!(event_id = %event_id, decision_id = %d.decision_id,
        reviewer = %session.reviewer, verdict = verdict.as_str(), "decision published");
    Redirect::to(&format!(
        "{}?published={}",
        item_href(&event_id),
        d.decision_id
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item() -> Item {
        Item {
            event_id: "e 1/x".into(),
            customer_id: "C1".into(),
            data_type: "id_card".into(),
            region_code: "320102".into(),
            reason: "flagged".into(),
            priority: "high".into(),
            status: "open".into(),
            superseded_by: None,
            row_version: Some(2),
            proposed: json!({"quality_score": 0.25, "validation_status": "invalid"})
                .as_object()
                .unwrap()
                .clone(),
            current: Some(
                json!({"id_card": "320102199001011234", "quality_score": 0.3, "validation_status": "invalid"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            details: vec![],
            governed_at: None,
            created_at: None,
            decided_by: None,
            decided_at: None,
            decision: None,
            comment: None,
        }
    }

    #[test]
    fn the_comparison_marks_what_the_proposal_changes() {
        let rows = compare(&item());
        let get = |n: &str| rows.iter().find(|r| r.name == n).unwrap();
        assert!(get("quality_score").changed);
        assert_eq!(get("quality_score").current, "0.3");
        assert!(!get("validation_status").changed);
        assert!(!get("id_card").changed);
        assert_eq!(get("id_card").proposed, "");
        assert_eq!(rows[0].name, "quality_score", "proposed fields first");
    }

    #[test]
    fn the_correction_form_offers_the_data_fields_with_the_proposal() {
        let rules = crate::event::RuleSet::default();
        let f = inputs(&item(), &rules, &[]);
        let names: Vec<&str> = f.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["id_card", "validation_status"]);
        assert_eq!(f[0].value, "");
        assert_eq!(f[0].current, "320102199001011234");
        assert_eq!(f[1].value, "invalid");
        let typed = vec![("set.id_card".to_string(), "X".to_string())];
        assert_eq!(inputs(&item(), &rules, &typed)[0].value, "X");
    }

    #[test]
    fn instructions_fit_the_reason_and_type() {
        let i = instructions("flagged", "id_card");
        assert!(i[1].contains("paper ID card"));
        assert!(instructions("conflict", "phone")[0].contains("changed this row"));
        assert!(instructions("check_contradiction", "address")[0].contains("disagrees"));
        assert_eq!(super::super::item_href("e 1/x"), "/item/e%201%2Fx");
    }
}
