//! The `console` binary: the shared service command line (`hookrelay::service`), then
//! [`console::Console`].

/// jemalloc, as the other services: a smaller resident set for the index's growth.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hookrelay::service::main::<console::Console>().await
}
