//! `receiver.auth.secret_file` is re-read while the receiver runs: a changed file is used at
//! once, no restart; a file that cannot be used keeps the previous secrets.

use std::time::Duration;

use hookrelay_testkit::{Stack, delivery, eventually, new_uuid, user_created_event};

/// The status of a delivery carrying `secret`.
async fn status_with(stack: &Stack, url: &str, secret: &str) -> u16 {
    let body = delivery(
        &new_uuid(),
        vec![user_created_event(&new_uuid(), "s@example.com")],
    );
    (stack.http.post(url))
        .header("authorization", secret)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("answered")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_changed_secret_file_is_used_without_a_restart_and_a_bad_one_keeps_the_last_secrets() {
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("secrets");
    std::fs::write(&file, "first-0815\n").expect("written");
    let path = file.display().to_string();
    let stack = Stack::with(&[
        ("HOOKRELAY__RECEIVER__AUTH__SECRET", ""),
        ("HOOKRELAY__RECEIVER__AUTH__SECRET_FILE", &path),
    ])
    .await;
    let receiver = stack.receiver().await;
    assert_eq!(status_with(&stack, &receiver.url, "first-0815").await, 200);

    std::fs::write(&file, "first-0815\nsecond-4711\n").expect("written");
    eventually("the second secret is accepted", || async {
        status_with(&stack, &receiver.url, "second-4711").await == 200
    })
    .await;
    std::fs::write(&file, "second-4711\n").expect("written");
    eventually("the first secret is refused", || async {
        status_with(&stack, &receiver.url, "first-0815").await == 401
    })
    .await;

    // Emptied, holding a value no header can carry, or gone: the last secrets stay.
    for bad in [Some(""), Some("third\u{7}bell\n"), None] {
        match bad {
            Some(text) => std::fs::write(&file, text).expect("written"),
            None => std::fs::remove_file(&file).expect("removed"),
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            status_with(&stack, &receiver.url, "second-4711").await,
            200,
            "{bad:?}"
        );
    }
}
