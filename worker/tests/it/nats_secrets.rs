//! The worker binary with every way of giving NATS a secret: it connects, and prints none.

use std::path::Path;

#[tokio::test]
async fn no_nats_secret_is_ever_printed() {
    let binary = Path::new(env!("CARGO_BIN_EXE_worker"));
    hookrelay_testkit::secure::assert_service_never_prints_secrets(binary, "worker ready").await;
}
