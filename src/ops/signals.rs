//! Waiting for Ctrl-C or SIGTERM, the two ways an operator stops
//! `govsync run` or a replay. Needs a tokio runtime.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The SIGTERM stream; None when it cannot be installed (then only Ctrl-C
/// stops).
pub(super) fn sigterm() -> Option<Signal> {
    signal(SignalKind::terminate()).ok()
}

/// Returns at the next Ctrl-C, or SIGTERM on `term`.
pub(super) async fn interrupt(term: &mut Option<Signal>) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
