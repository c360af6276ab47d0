//! Past one machine: a 3-node NATS cluster with both streams replicated three times, two
//! receivers and a worker. Killing the stream's leader under load loses nothing acknowledged,
//! and the receivers keep answering 200.

use hookrelay_testkit::load::{Load, assert_nothing_acknowledged_lost};
use std::path::Path;

use hookrelay::Settings;
use hookrelay_testkit::{
    Downstream, NatsCluster, PATIENCE, Process, Receiver, Reply, default_config, env_for_url,
    stored_messages,
};

use crate::helpers::http_subscriber_config;

#[tokio::test]
async fn killing_the_stream_leader_of_a_3_node_cluster_loses_nothing_acknowledged() {
    let mut cluster = NatsCluster::start(3);
    let env = env_for_url(&cluster.urls(), &[("HOOKRELAY__NATS__REPLICAS", "3")]);
    let settings = Settings::load_from(Some(&default_config()), Some(env.clone()))
        .expect("the cluster's settings are valid");
    let receivers = [
        Receiver::start(&settings).await,
        Receiver::start(&settings).await,
    ];
    let downstream = Downstream::start(|_, _| Reply::status(200)).await;
    // Events that were on their way to the worker through the killed node come back after
    // ack_wait; keep it short so the test need not wait the default 30 s.
    let (_dir, config) = http_subscriber_config(&downstream.url, "ack_wait = \"2s\"");
    let worker_binary = Path::new(env!("CARGO_BIN_EXE_worker"));
    let _worker = Process::start(worker_binary, &config, &env, "worker ready").await;

    let client = async_nats::connect(cluster.urls().split(',').collect::<Vec<_>>())
        .await
        .expect("connects to the cluster");
    let js = async_nats::jetstream::new(client);
    let mut stream = (js.get_stream(&settings.nats.stream).await).expect("the stream");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.config.num_replicas, 3);
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the stream has a leader");

    let urls: Vec<String> = receivers.iter().map(|r| r.url.clone()).collect();
    let load = Load::start(&urls, 2);
    load.wait_for_more_accepted(40).await;
    let fault = std::time::Instant::now();
    cluster.node_mut(&leader).kill();
    load.wait_for_more_accepted(100).await;
    let outcomes = load.finish().await;

    let stored = stored_messages(&js, &settings.nats.stream).await;
    let stored_ids: Vec<&str> = stored
        .iter()
        .filter_map(|m| m.headers.get("Nats-Msg-Id").map(|v| v.as_str()))
        .collect();
    let (accepted, unavailable) = assert_nothing_acknowledged_lost(&outcomes, &stored_ids);
    eprintln!(
        "leader {leader} killed: {}",
        hookrelay_testkit::load::summary(&outcomes, fault)
    );
    assert!(accepted > 0 && unavailable < outcomes.len());

    // And the worker, on the surviving nodes, got every accepted event.
    let accepted_ids: Vec<String> = outcomes
        .iter()
        .filter(|o| o.answer == Ok(200))
        .map(|o| o.uuid.clone())
        .collect();
    downstream
        .wait_until(3 * PATIENCE, |requests| {
            accepted_ids
                .iter()
                .all(|id| requests.iter().any(|r| r.key() == id))
        })
        .await;
}
