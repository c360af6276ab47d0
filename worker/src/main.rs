//! The `worker` binary: the shared service command line (`hookrelay::service`), then
//! [`worker::Worker`].

/// jemalloc: less lock contention per request than glibc's allocator and a smaller resident
/// set under load than glibc or mimalloc (bench/run measures both).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hookrelay::service::main::<worker::Worker>().await
}
