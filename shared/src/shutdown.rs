//! One shutdown signal for both binaries: SIGINT (Ctrl-C) or SIGTERM (`docker stop`) cancels a
//! [`CancellationToken`] that is passed down to everything that must stop.

use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled on the first SIGINT or SIGTERM. The handlers are in place
/// when this returns, so a signal that comes right after start-up is a clean stop, not the
/// default action (which kills the process).
#[cfg(unix)]
pub fn on_signal() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(cancel_when(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }))
}

/// Returns a token that is cancelled on Ctrl-C.
#[cfg(not(unix))]
pub fn on_signal() -> std::io::Result<CancellationToken> {
    Ok(cancel_when(async {
        let _ = tokio::signal::ctrl_c().await;
    }))
}

fn cancel_when(signal: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}
