//! The console in a real browser (headless Chromium over WebDriver): signing in with the form,
//! finding an event by a user's login, its attempts, replaying a dead letter that then reaches
//! the downstream, pausing and resuming a subscriber, "N new events" appearing without a reload,
//! and no error in the browser's console on any page. Screenshots at 1,280 and 390 px go to
//! the test's target directory, or with `HOOKRELAY_SCREENSHOTS=<dir>` there (the README's come
//! from here: `HOOKRELAY_SCREENSHOTS=docs/console`).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::Locator;
use hookrelay_testkit::browser::Browser;
use hookrelay_testkit::{PATIENCE, Reply, delivery, new_uuid, user_created_event};

use crate::helpers::{App, OPERATOR};

/// Where screenshots go.
fn screenshots() -> PathBuf {
    match std::env::var_os("HOOKRELAY_SCREENSHOTS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"),
    }
}

/// Takes `name` at both widths, then goes back to the desktop's.
async fn screenshots_of(browser: &Browser, name: &str) {
    let dir = screenshots();
    for (width, height) in [(390, 844), (1280, 900)] {
        browser.set_size(width, height).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        browser
            .screenshot(&dir.join(format!("{name}-{width}.png")))
            .await;
    }
}

/// Fails the test if the browser's console reported an error on the page just shown.
async fn no_console_errors(browser: &Browser, page: &str) {
    let errors = browser.console_errors().await;
    assert!(
        errors.is_empty(),
        "the browser's console on {page}: {errors:#?}"
    );
}

#[tokio::test]
async fn an_operator_finds_an_event_replays_a_dead_letter_and_pauses_a_subscriber_in_a_browser() {
    // The downstream refuses broken@example.com's event the first time (a permanent 400:
    // dead-lettered at once), and takes it when it is replayed.
    let app = App::start(|request, before| {
        let body = String::from_utf8_lossy(&request.body);
        if body.contains("broken@example.com") && before == 0 {
            Reply::status(400)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let (jane, broken) = (new_uuid(), new_uuid());
    let mut events = vec![
        user_created_event(&jane, "jane.doe@example.com"),
        user_created_event(&broken, "broken@example.com"),
    ];
    for i in 0..6 {
        events.push(user_created_event(
            &new_uuid(),
            &format!("user{i}@example.com"),
        ));
    }
    let mut hostile = user_created_event(&new_uuid(), "mallory@example.com");
    hostile["target"][0]["displayName"] = "<script>document.title='pwned'</script>".into();
    events.push(hostile);
    app.receiver.deliver(&delivery(&new_uuid(), events)).await;
    app.stack.wait_for_dead_letters(1).await;

    let browser = Browser::start().await;
    let web = browser.client();
    let url = &app.console.url;

    // Signed out, every page leads to the sign-in form, which leads back.
    web.goto(&format!("{url}/events")).await.expect("goto");
    browser.wait_for_text("h1", "Sign in").await;
    no_console_errors(&browser, "the sign-in page").await;
    screenshots_of(&browser, "sign-in").await;
    web.form(Locator::Css("form[action='/login']"))
        .await
        .expect("the form")
        .set_by_name("username", OPERATOR.0)
        .await
        .expect("a name")
        .set_by_name("password", OPERATOR.1)
        .await
        .expect("a password")
        .submit()
        .await
        .expect("submitted");
    browser.wait_for_text("h1", "Events").await;
    browser
        .wait_for_text("table.events", "jane.doe@example.com")
        .await;
    let title = web.title().await.expect("a title");
    assert_eq!(title, "Events · hookrelay", "no script of an event ran");
    no_console_errors(&browser, "the events page").await;
    screenshots_of(&browser, "events").await;

    // Find Jane's event by her login, and open it.
    web.form(Locator::Css("form.filters"))
        .await
        .expect("the filters")
        .set_by_name("q", "Jane.Doe@example.com")
        .await
        .expect("q")
        .submit()
        .await
        .expect("searched");
    browser.wait_for_text("p.searched", "Searched").await;
    let rows = web
        .find_all(Locator::Css("table.events tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1, "only Jane's event");
    web.find(Locator::Css("table.events tbody tr a"))
        .await
        .expect("its link")
        .click()
        .await
        .expect("opened");
    browser.wait_for_text("h1.uuid", &jane).await;
    browser.wait_for_text("table.attempts", "200").await;
    browser.wait_for_text("section.subscriber", "audit").await;
    no_console_errors(&browser, "an event's page").await;
    screenshots_of(&browser, "event").await;

    // Replay the dead letter to crm; the downstream receives it.
    web.goto(&format!("{url}/dead-letters?subscriber=crm"))
        .await
        .expect("goto");
    browser.wait_for_text("table.letters", &broken).await;
    no_console_errors(&browser, "the dead letters").await;
    screenshots_of(&browser, "dead-letters").await;
    web.find(Locator::Css(&format!("input[name=uuid][value='{broken}']")))
        .await
        .expect("its checkbox")
        .click()
        .await
        .expect("chosen");
    web.find(Locator::Css("#chosen button[type=submit]"))
        .await
        .expect("replay")
        .click()
        .await
        .expect("previewed");
    browser
        .wait_for_text("h1", "Will replay 1 dead letter to crm")
        .await;
    no_console_errors(&browser, "the replay's preview").await;
    web.find(Locator::Css("form.confirm button"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("replayed");
    browser
        .wait_for_text(".flash", "Replayed 1 dead letter to crm")
        .await;
    app.downstream
        .wait_until(PATIENCE, |requests| {
            requests.iter().filter(|r| r.key() == broken).count() == 2
        })
        .await;

    // Pause crm: an event delivered now waits; resume: it goes.
    web.goto(&format!("{url}/subscribers")).await.expect("goto");
    browser.wait_for_text("section.card", "crm").await;
    no_console_errors(&browser, "the subscribers").await;
    screenshots_of(&browser, "subscribers").await;
    web.find(Locator::Css("form[action='/subscribers/crm/pause'] button"))
        .await
        .expect("pause")
        .click()
        .await
        .expect("paused");
    browser.wait_for_text(".flash", "Paused crm").await;
    let held = new_uuid();
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&held, "held@example.com")],
        ))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        app.downstream.requests_for(&held).is_empty(),
        "paused: not forwarded"
    );
    web.find(Locator::Css(
        "form[action='/subscribers/crm/resume'] button",
    ))
    .await
    .expect("resume")
    .click()
    .await
    .expect("resumed");
    browser.wait_for_text(".flash", "Resumed crm").await;
    app.downstream
        .wait_until(PATIENCE, |requests| {
            requests.iter().any(|r| r.key() == held)
        })
        .await;

    // "N new events" appears on an open page without a reload.
    web.goto(&format!("{url}/events")).await.expect("goto");
    browser
        .wait_for_text("table.events", "held@example.com")
        .await;
    web.execute("window.stillThisPage = true; return null;", vec![])
        .await
        .expect("marked");
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&new_uuid(), "late@example.com")],
        ))
        .await;
    browser.wait_for_text("#new-events", "1 new event").await;
    let same = web
        .execute("return window.stillThisPage === true;", vec![])
        .await
        .expect("asked");
    assert_eq!(same, serde_json::json!(true), "the page was not reloaded");
    no_console_errors(&browser, "the events page with new events").await;

    web.goto(&format!("{url}/okta")).await.expect("goto");
    browser.wait_for_text("h1", "Okta").await;
    no_console_errors(&browser, "the Okta page").await;
    screenshots_of(&browser, "okta").await;
    browser.close().await;
}

#[tokio::test]
async fn signing_in_with_okta_works_in_a_browser() {
    let okta = crate::okta::AuthServer::start().await;
    let app = okta.app().await;
    let browser = Browser::start().await;
    let web = browser.client();
    web.goto(&format!("{}/events", app.console.url))
        .await
        .expect("goto");
    browser.wait_for_text("a.button", "Sign in with Okta").await;
    no_console_errors(&browser, "the sign-in page with Okta").await;
    web.find(Locator::LinkText("Sign in with Okta"))
        .await
        .expect("the link")
        .click()
        .await
        .expect("to Okta");
    browser.wait_for_text("body", "Fake Okta").await;
    web.form(Locator::Css("form"))
        .await
        .expect("Okta's form")
        .set_by_name("username", crate::okta::OPERATOR_LOGIN)
        .await
        .expect("a login")
        .set_by_name("password", crate::okta::PASSWORD)
        .await
        .expect("a password")
        .submit()
        .await
        .expect("signed in at Okta");
    browser.wait_for_text("h1", "Events").await;
    browser
        .wait_for_text("form.who", crate::okta::OPERATOR_LOGIN)
        .await;
    no_console_errors(&browser, "signing in with Okta").await;
    browser.close().await;
}
