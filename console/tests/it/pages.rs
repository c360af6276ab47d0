//! What each page answers, in HTML and in JSON.

use hookrelay_testkit::{Reply, delivery, eventually, new_uuid, user_created_event};

use crate::helpers::App;

#[tokio::test]
async fn the_pages_answer_a_signed_in_operator() {
    let app = App::start(|_, _| Reply::status(200)).await;
    let uuid = new_uuid();
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&uuid, "jane.doe@example.com")],
        ))
        .await;
    let client = app.operator().await;
    eventually("the event is listed", || async {
        let (status, page) = client.get_json("/events").await;
        status == 200 && page["events"].as_array().is_some_and(|e| e.len() == 1)
    })
    .await;
    for path in [
        "/events",
        &format!("/events/{uuid}"),
        "/dead-letters",
        "/subscribers",
        "/okta",
    ] {
        let response = client.get(path).await;
        let status = response.status();
        let body = response.text().await.expect("a body");
        if std::env::var_os("TEST_DUMP").is_some() {
            std::fs::write(format!("/tmp/page{}.html", path.replace('/', "_")), &body).ok();
        }
        assert_eq!(status, 200, "{path}: {body}");
    }
}
