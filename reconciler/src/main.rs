//! The `reconciler` binary: the shared service command line, then [`reconciler::Reconciler`].

use hookrelay::service::{self, Service};

/// The same allocator as the other services.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let reconciler = Service {
        name: "reconciler",
        about: "Reads Okta's System Log and stores, exactly once, every event the hook missed",
        admin_listen: |settings| settings.reconciler.admin_listen,
    };
    service::main(reconciler, |settings, shutdown| async move {
        let reconciler = reconciler::Reconciler::build(&settings).await?;
        reconciler.run(shutdown).await
    })
    .await
}
