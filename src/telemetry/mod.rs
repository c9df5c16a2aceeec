//! Logs (tracing), metrics (one place names them all), PII masking and the
//! HTTP endpoint (/metrics, /healthz, /readyz).

pub mod http;
pub mod mask;
pub mod metrics;
pub mod outage;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber. `json` wins unless the format is
/// `text`, or `auto` on a terminal. `RUST_LOG` overrides the level.
pub fn init_logging(format: LogFormat, level: &str) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let filter = EnvFilter::try_new(quiet_sqlx(&spec)).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    // Colours only on a terminal: a text log written to a file or a
    // collector stays plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

/// sqlx's own WARN lines repeat what govsync reports better: a slow
/// statement (with its whole SQL text) and every pooled connection that
/// fails its check during a database outage (which `outage` summarises).
/// Kept at ERROR unless the filter names sqlx itself.
fn quiet_sqlx(spec: &str) -> String {
    if spec.contains("sqlx") {
        spec.to_string()
    } else {
        format!("{spec},sqlx::query=error,sqlx_core::pool=error")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlx_warnings_are_quiet_unless_asked_for() {
        assert_eq!(
            super::quiet_sqlx("govsync=info,warn"),
            "govsync=info,warn,sqlx::query=error,sqlx_core::pool=error"
        );
        assert_eq!(super::quiet_sqlx("info,sqlx=debug"), "info,sqlx=debug");
    }
}
