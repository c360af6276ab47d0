//! The `worker` binary: the shared service command line, then [`worker::Worker`].

use hookrelay::service::{self, Service};

/// jemalloc: less lock contention per request than glibc's allocator and a smaller resident
/// set under load than glibc or mimalloc (bench/run measures both).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let worker = Service {
        name: "worker",
        about: "Runs hookrelay's subscribers on the Okta events stored in NATS JetStream",
        admin_listen: |settings| settings.worker.admin_listen,
    };
    service::main(worker, |settings, shutdown| async move {
        let worker = worker::Worker::build(&settings).await?;
        worker.run(shutdown).await
    })
    .await
}
