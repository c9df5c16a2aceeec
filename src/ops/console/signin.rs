//! Signing in with a name and password from the reviewers file, and
//! signing out. The sign-in form is protected by a double-submit token (a
//! cookie and a form field that must match), as no session exists yet.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::auth::{self, SESSION_COOKIE, SIGNIN_COOKIE};
use super::{App, field, form_fields, render};

#[derive(Template)]
#[template(path = "console/signin.html")]
struct SignIn<'a> {
    reviewer: Option<&'a str>,
    csrf: &'a str,
    error: Option<&'a str>,
    password: bool,
    name: &'a str,
}

/// GET /signin.
pub(super) async fn form(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if super::who(&app, &headers).is_some() {
        return Redirect::to("/").into_response();
    }
    page(&app, StatusCode::OK, None, "")
}

fn page(app: &App, status: StatusCode, error: Option<&str>, name: &str) -> Response {
    let token = auth::token();
    let error = match (error, app.reviewers.is_some()) {
        (Some(e), _) => Some(e),
        (None, false) => {
            Some("Sign-in goes through your organisation's proxy: open the console through it.")
        }
        (None, true) => None,
    };
    let cookie = auth::set_cookie(SIGNIN_COOKIE, &token, Duration::from_secs(3600));
    render(
        status,
        &SignIn {
            reviewer: None,
            csrf: &token,
            error,
            password: app.reviewers.is_some(),
            name,
        },
        Some(cookie),
    )
}

/// POST /signin: name, password, csrf.
pub(super) async fn submit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let expected = auth::cookie(&headers, SIGNIN_COOKIE);
    let sent = field(&fields, "csrf");
    if !matches!((expected, sent), (Some(e), Some(s)) if !e.is_empty() && auth::same(e, s)) {
        tracing::warn!("sign-in refused: missing or wrong CSRF token");
        return (
            StatusCode::FORBIDDEN,
            "the sign-in form's token is missing or wrong; reload the page\n",
        )
            .into_response();
    }
    let name = field(&fields, "name").unwrap_or("").trim().to_string();
    let password = field(&fields, "password").unwrap_or("").to_string();
    let ok = match &app.reviewers {
        Some(_) => {
            let a = app.clone();
            let n = name.clone();
            tokio::task::spawn_blocking(move || {
                a.reviewers
                    .as_ref()
                    .is_some_and(|r| r.verify(&n, &password))
            })
            .await
            .unwrap_or(false)
        }
        None => false,
    };
    if !ok {
        tracing::info!(reviewer = %name_for_log(&name), "sign-in refused: unknown name or wrong password");
        return page(
            &app,
            StatusCode::UNAUTHORIZED,
            Some("Unknown name or wrong password."),
            &name,
        );
    }
    let (token, _) = app.sessions.create(&name);
    tracing::info!(reviewer = %name, "reviewer signed in");
    let mut r = Redirect::to("/").into_response();
    let h = r.headers_mut();
    for c in [
        auth::set_cookie(SESSION_COOKIE, &token, app.sessions.lifetime()),
        auth::set_cookie(SIGNIN_COOKIE, "", Duration::ZERO),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

/// A name typed at sign-in, for the log: a name that is not a reviewer's
/// could be anything (someone's phone number typed in the wrong box).
fn name_for_log(name: &str) -> String {
    crate::telemetry::mask::text(name)
}

/// POST /signout.
pub(super) async fn signout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    if let Err(r) = super::authorize(&app, &headers, field(&fields, "csrf")) {
        return r.into_response();
    }
    if let Some(t) = auth::cookie(&headers, SESSION_COOKIE) {
        app.sessions.remove(t);
    }
    let mut r = Redirect::to("/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(SESSION_COOKIE, "", Duration::ZERO)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
