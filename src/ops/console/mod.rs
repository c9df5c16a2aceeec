//! `govsync review serve`: the review console, server-rendered pages
//! (askama templates in `templates/console/`, HTML-escaped) over axum.
//!
//! ```text
//! browser ──HTTP──▶ axum router ─┬─ /signin, /signout    [`signin`]
//!                                ├─ /  (queue), /bulk     [`queue`]
//!                                ├─ /item/{id}[/decide]   [`item`]
//!                                └─ /healthz, /static/*
//!          reads  govsync_review_item through the Database  [`store`]
//!          writes the decision topic only                  [`decide`]
//! ```
//!
//! The console never writes the business table: a decision is a message on
//! `kafka.decision_topic`, applied exactly once by `govsync run`. Every
//! page but sign-in needs a signed-in reviewer, every POST the session's
//! CSRF token ([`auth`]); a decision records the session's reviewer.
//! Logs name event ids, reviewers and verdicts, never the values.

pub mod auth;
pub mod decide;
mod item;
mod queue;
mod signin;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use self::auth::{Reviewers, Session, Sessions};
use self::decide::Publisher;
use crate::config::Config;
use crate::sink::{self, Database};

/// What every request handler shares.
pub struct App {
    pub cfg: Arc<Config>,
    pub db: Arc<dyn Database>,
    pub publisher: Publisher,
    /// Password sign-in; `None` when `review.reviewers_file` is empty.
    pub reviewers: Option<Reviewers>,
    /// The trusted proxy's header naming the reviewer, when configured.
    pub proxy_header: Option<HeaderName>,
    pub sessions: Sessions,
}

/// Refuses a console nobody could sign in to.
pub fn check_sign_in(cfg: &Config) -> anyhow::Result<()> {
    if cfg.review.reviewers_file.is_none() && cfg.review.trusted_proxy_header.is_none() {
        anyhow::bail!(
            "no way to sign in: set review.reviewers_file (one `name:argon2-hash` per line, \
             see `govsync review hash-password`) or review.trusted_proxy_header (behind an \
             authenticating reverse proxy)"
        );
    }
    Ok(())
}

impl App {
    /// Connects to the database and Kafka and reads the reviewers file.
    pub async fn new(cfg: Arc<Config>) -> anyhow::Result<App> {
        check_sign_in(&cfg)?;
        let reviewers = match &cfg.review.reviewers_file {
            Some(p) => Some(Reviewers::load(p).context("review.reviewers_file")?),
            None => None,
        };
        let proxy_header = match &cfg.review.trusted_proxy_header {
            Some(h) => {
                Some(HeaderName::try_from(h.as_str()).context("review.trusted_proxy_header")?)
            }
            None => None,
        };
        let db = sink::connect(&cfg.database)
            .await
            .context("connecting to the database")?;
        let publisher = Publisher::new(&cfg.kafka).context("creating the Kafka producer")?;
        Ok(App {
            cfg,
            db,
            publisher,
            reviewers,
            proxy_header,
            sessions: Sessions::new(auth::SESSION_LIFETIME),
        })
    }
}

/// The console's routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(queue::page))
        .route("/bulk", post(queue::bulk))
        .route("/item/{event_id}", get(item::page))
        .route("/item/{event_id}/decide", post(item::decide))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::signout))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/static/console.css", get(css))
        .route("/static/console.js", get(js))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(app)
}

/// `govsync review serve`: the console on `listen` until Ctrl-C/SIGTERM.
pub async fn serve(cfg: Arc<Config>, listen: SocketAddr) -> anyhow::Result<()> {
    let mut term = super::signals::sigterm();
    let app = Arc::new(App::new(cfg).await?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding review.console_listen {listen}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(
        %bound,
        reviewers = app.reviewers.as_ref().map_or(0, Reviewers::len),
        proxy_header = app.proxy_header.is_some(),
        "review console listening"
    );
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        super::signals::interrupt(&mut term).await;
        s.cancel();
    });
    let db = app.db.clone();
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    db.close().await;
    tracing::info!("review console stopped");
    Ok(())
}

/// No framing, no sniffing, no referrer with event ids, scripts and styles
/// from the console only.
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (k, v) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../../templates/console/console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../../templates/console/console.js"),
    )
}

/// Who is asking: the session of the cookie, or, behind the trusted proxy,
/// a session made for the header's reviewer (its cookie to set returned
/// too). With a proxy header configured, a session whose reviewer is not
/// the header's is not used.
pub(crate) fn who(app: &App, headers: &HeaderMap) -> Option<(Session, Option<String>)> {
    let from_cookie = auth::cookie(headers, auth::SESSION_COOKIE).and_then(|t| app.sessions.get(t));
    let Some(h) = &app.proxy_header else {
        return from_cookie.map(|s| (s, None));
    };
    let name = headers
        .get(h)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|n| auth::valid_name(n));
    match (from_cookie, name) {
        (Some(s), Some(n)) if s.reviewer == n => Some((s, None)),
        (_, Some(n)) => {
            let (token, s) = app.sessions.create(n);
            tracing::info!(reviewer = %n, "reviewer signed in through the proxy");
            let cookie = auth::set_cookie(auth::SESSION_COOKIE, &token, app.sessions.lifetime());
            Some((s, Some(cookie)))
        }
        // Without the header a cookie's session still counts only when
        // password sign-in is configured too.
        (Some(s), None) if app.reviewers.is_some() => Some((s, None)),
        _ => None,
    }
}

/// A POST refused before anything happens: the status and what to say.
pub(crate) struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// A POST's reviewer: the session, and its CSRF token matching the form's;
/// else the refusal (401 without a session, 403 with a wrong token).
pub(crate) fn authorize(
    app: &App,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<Session, Refused> {
    let Some((session, _)) = who(app, headers) else {
        return Err(Refused(StatusCode::UNAUTHORIZED, "sign in first\n"));
    };
    if !session.csrf_ok(form_token) {
        tracing::warn!(reviewer = %session.reviewer, "form refused: missing or wrong CSRF token");
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong; reload the page\n",
        ));
    }
    Ok(session)
}

/// The sign-in page for a request without a reviewer.
pub(crate) fn to_signin() -> Response {
    Redirect::to("/signin").into_response()
}

/// Renders a page, with the cookie to set if a session was just made.
pub(crate) fn render(
    status: StatusCode,
    page: &impl Template,
    set_cookie: Option<String>,
) -> Response {
    match page.render() {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "page failed to render\n").into_response()
        }
    }
}

/// A page for a failure the reviewer cannot fix (the database or broker is
/// down): 503, the cause logged without values.
pub(crate) fn unavailable(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %crate::telemetry::mask::digits_in(&e.to_string()), "{what}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{what}; try again shortly\n"),
    )
        .into_response()
}

/// A form body's fields, in order (repeated keys kept).
pub(crate) fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of a form field.
pub(crate) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An item page's address: the event id with everything but unreserved
/// characters escaped.
pub(crate) fn item_href(event_id: &str) -> String {
    let mut out = String::from("/item/");
    for b in event_id.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
