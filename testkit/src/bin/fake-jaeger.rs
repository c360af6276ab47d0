//! `fake-jaeger`: the compose smoke test's stand-in for Jaeger all-in-one (`testkit::jaeger`).
//! OTLP/HTTP on 0.0.0.0:4318, the query API on 0.0.0.0:16686. Jaeger's own flags (the compose
//! file's `--set receivers…`) are accepted and ignored: the addresses are fixed.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let otlp = std::net::SocketAddr::from(([0, 0, 0, 0], 4318));
    let query = std::net::SocketAddr::from(([0, 0, 0, 0], 16686));
    println!("fake-jaeger: OTLP/HTTP on {otlp}, query API on {query}");
    hookrelay_testkit::jaeger::serve(otlp, query).await
}
