//! The `receiver` binary: the shared service command line, then [`receiver::Application`].

use hookrelay::service::{self, Service};

/// jemalloc: less lock contention per request than glibc's allocator and a smaller resident
/// set under load than glibc or mimalloc (bench/run measures both).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let receiver = Service {
        name: "receiver",
        about: "Receives Okta event hooks and stores every event in NATS JetStream",
        admin_listen: |settings| settings.receiver.admin_listen,
    };
    service::main(receiver, |settings, shutdown| async move {
        let app = receiver::Application::build(&settings).await?;
        app.run(shutdown).await
    })
    .await
}
