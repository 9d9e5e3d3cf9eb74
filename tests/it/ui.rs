//! The web UI end to end in headless Chromium, against the real server: sign-up and sign-in,
//! streamed answers (a fake OpenAI-compatible model with known Markdown, and the local tiny
//! model), stop, regenerate, edit and resend, versions, errors with retry, rename, pin,
//! delete, reload, dark mode, a phone-sized window; a model still downloading at start shows
//! its progress. Screenshots go to `screenshots/ui-*.png`.

use std::time::Duration;

use serde_json::json;

use crate::browser::{self, Browser, ENTER, ESCAPE};
use crate::common::{Options, Remote, TestServer};
use crate::fake_hub::server_downloading_the_tiny_model;
use crate::fakes::{Behaviour, FakeOpenAi};

/// The fake model's answer: a table, code, math, and hostile HTML that must stay inert.
const MARKDOWN_ANSWER: [&str; 6] = [
    "Here is a table:\n\n| Fruit | Colour |\n|---|---|\n| Apple | Red |\n",
    "| Lime | Green |\n\n```rust\nfn main() {\n    println!(\"hi\");\n}\n```\n\n",
    "Einstein wrote $E = mc^2$ and\n\n$$\\int_0^1 x^2 \\, dx = \\frac{1}{3}$$\n\n",
    "<script>window.__pwned = 1</script> <img src=x onerror=\"window.__pwned = 2\">\n\n",
    "[a bad link](javascript:window.__pwned=3) and [a good one](https://example.com).\n\n",
    "> A quote\n\n- one\n- two\n",
];

/// Whether the server binary carries the web UI.
async fn ui_built(server: &TestServer) -> bool {
    let page = reqwest::get(server.url("/")).await.unwrap().text().await.unwrap();
    page.contains("/boot.")
}

#[tokio::test]
async fn the_chat_works_in_a_browser() {
    if let Err(reason) = browser::available() {
        if browser::skip_or_fail(&reason) {
            return;
        }
    }
    let fake = FakeOpenAi::start(Behaviour::slow_reply(&MARKDOWN_ANSWER, 40));
    let server = TestServer::start_with(Options {
        remotes: vec![Remote {
            id: "fake",
            kind: "openai",
            base_url: fake.base_url.clone(),
            fallback: vec![],
            capabilities: vec![],
        }],
        default_model: Some("fake"),
        ..Default::default()
    });
    if !ui_built(&server).await
        && browser::skip_or_fail("the server was built without the web UI (scripts/build-web.sh)")
    {
        return;
    }
    let b = Browser::start("ui", 1280, 860).await;

    // Signed out: the sign-in page; a wrong password says so.
    b.goto(&server.url("/")).await;
    b.wait_for(
        "the sign-in page",
        "location.pathname === '/login' && document.querySelector('h1')?.textContent === 'Sign in'",
    )
    .await;
    b.screenshot("01-sign-in").await;
    b.type_into("#login", "nobody").await;
    b.type_into("#password", "not the password").await;
    b.click("button[type=submit]").await;
    b.wait_for(
        "the sign-in error",
        "document.querySelector('.form-error')?.textContent.includes('Wrong')",
    )
    .await;
    b.screenshot("02-sign-in-error").await;

    // Sign up: straight into a new chat.
    b.click("a[href='/register']").await;
    b.wait_for("the sign-up page", "location.pathname === '/register'")
        .await;
    b.type_into("#email", "ada@example.com").await;
    b.type_into("#username", "ada").await;
    b.type_into("#new-password", "a long enough password").await;
    b.click("button[type=submit]").await;
    b.wait_for(
        "the welcome screen",
        "location.pathname === '/c' && document.querySelector('.welcome')",
    )
    .await;
    b.wait_for(
        "the greeting",
        "document.querySelector('.welcome h2')?.textContent.includes('ada')",
    )
    .await;
    b.screenshot("03-welcome").await;

    // A Markdown answer streams in and renders: table, highlighted code, typeset math; the
    // hostile HTML shows as text and runs nothing; the bad link is gone.
    b.type_into("#composer-input", "Show me some markdown").await;
    b.type_into("#composer-input", ENTER).await;
    b.wait_for(
        "the answer to start streaming",
        "document.querySelector('.message.streaming')",
    )
    .await;
    b.wait_for(
        "the streamed answer",
        "document.querySelector('.message.assistant:not(.streaming) table') && !document.querySelector('.streaming')",
    )
    .await;
    b.wait_for("the conversation's address", "location.pathname.startsWith('/c/')")
        .await;
    b.wait_for(
        "highlighted code",
        "document.querySelector('.markdown pre code.hljs .hljs-keyword')",
    )
    .await;
    b.wait_for(
        "typeset math",
        "document.querySelectorAll('.math.typeset .katex').length === 2",
    )
    .await;
    assert_eq!(
        b.js("return window.__pwned === undefined").await,
        json!(true),
        "model output ran code"
    );
    assert_eq!(
        b.js("return document.querySelector('.message.assistant .markdown').textContent.includes('<script>window.__pwned')")
            .await,
        json!(true),
        "raw HTML is shown as text"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('.markdown a[href^=\"javascript\"], .markdown img, .markdown script').length")
            .await,
        json!(0)
    );
    assert_eq!(
        b.js("return document.querySelector('.markdown a[href=\"https://example.com\"]').rel")
            .await,
        json!("noopener noreferrer nofollow")
    );
    assert_eq!(
        b.js("return /^\\d+ prompt \\+ 6 answer tokens · fake$/.test(document.querySelector('.message.assistant .markdown').title)")
            .await,
        json!(true),
        "token usage on hover"
    );
    b.wait_for("the list entry", "document.querySelectorAll('.row').length === 1")
        .await;
    b.screenshot("04-markdown").await;

    // Regenerate: a second version, and arrows between the two.
    b.click("button[aria-label='Regenerate answer']").await;
    b.wait_for(
        "the second version",
        "document.querySelector('.message.assistant .versions')?.textContent.includes('2/2') && !document.querySelector('.streaming')",
    )
    .await;
    b.click(".message.assistant button[aria-label='Previous version']")
        .await;
    b.wait_for(
        "the first version",
        "document.querySelector('.message.assistant .versions')?.textContent.includes('1/2')",
    )
    .await;
    b.screenshot("05-versions").await;

    // Edit and resend: a new branch from the edited question.
    b.click(".message.user button[aria-label='Edit and resend']").await;
    b.fill("#edit-message", "Edited: show me markdown again").await;
    b.click(".edit .primary").await;
    b.wait_for(
        "the edited question's answer",
        "document.querySelector('.message.user .bubble')?.textContent.startsWith('Edited:') \
         && document.querySelector('.message.user .versions')?.textContent.includes('2/2') \
         && document.querySelector('.message.assistant table') && !document.querySelector('.streaming')",
    )
    .await;
    b.screenshot("06-edited").await;

    // Stop: a long, slow answer stopped with Esc keeps its partial text, marked stopped.
    fake.set_behaviour(Behaviour::long_reply(600, 25));
    b.type_into("#composer-input", "Tell me a long story").await;
    b.type_into("#composer-input", ENTER).await;
    b.wait_for(
        "the long answer to stream",
        "document.querySelector('.streaming .markdown')?.textContent.includes('t3 ')",
    )
    .await;
    b.find("body").await.send_keys(ESCAPE).await.unwrap();
    b.wait_for(
        "the stopped answer",
        "!document.querySelector('.streaming') && document.querySelector('.status-note')?.textContent === 'Stopped'",
    )
    .await;
    let words = b
        .js("return document.querySelectorAll('.message.assistant .markdown')[document.querySelectorAll('.message.assistant .markdown').length - 1].textContent.split(' ').length")
        .await;
    assert!(words.as_u64().unwrap() < 500, "stopped early: {words}");
    b.screenshot("07-stopped").await;

    // An error shows on the message with a retry, which works once the model is back.
    fake.set_behaviour(Behaviour::RateLimited { retry_after: 1 });
    b.type_into("#composer-input", "Are you there?").await;
    b.type_into("#composer-input", ENTER).await;
    b.wait_for(
        "the rate-limit error",
        "[...document.querySelectorAll('.inline-error')].some(e => e.textContent.includes('Too many requests'))",
    )
    .await;
    b.screenshot("08-error").await;
    fake.set_behaviour(Behaviour::reply(&["Back online."]));
    b.click(".inline-error button").await;
    b.wait_for(
        "the retried answer",
        "[...document.querySelectorAll('.message.assistant .markdown')].some(m => m.textContent.includes('Back online.')) \
         && !document.querySelector('.streaming')",
    )
    .await;

    // The local engine through the model picker.
    b.click("button[aria-label='Conversation settings']").await;
    b.click("#model option[value='tiny']").await;
    b.wait_for("the model chosen", "document.querySelector('#model').value === 'tiny'")
        .await;
    b.fill("#max-tokens", "24").await;
    b.click(".panel .primary").await;
    b.wait_for("the panel to close", "!document.querySelector('.panel')")
        .await;
    let answers_before = b
        .js("return document.querySelectorAll('.message.assistant').length")
        .await;
    b.type_into("#composer-input", "Hello, tiny model").await;
    b.type_into("#composer-input", ENTER).await;
    b.wait_for(
        "the local model's answer",
        &format!(
            "document.querySelectorAll('.message.assistant').length > {answers_before} && !document.querySelector('.streaming')"
        ),
    )
    .await;
    let title = b
        .js("return [...document.querySelectorAll('.message.assistant .markdown')].pop().title")
        .await;
    let title = title.as_str().unwrap_or_default();
    if !(title.ends_with("· tiny") && title.contains("+ 24 answer tokens")) {
        b.screenshot("FAILED-tiny").await;
        let all = b
            .js("return [...document.querySelectorAll('.message')].map(m => m.className + ': ' + (m.querySelector('.markdown')?.title || '') + ' ' + m.textContent.slice(0, 40))")
            .await;
        panic!("{title}\n{all:#}");
    }

    // Rename inline, pin.
    b.click(".row.active button[aria-label='Rename']").await;
    // Ctrl+A then the new title (WebDriver's "clear" would blur the field, which saves it).
    b.type_into(".rename", "\u{E009}a\u{E000}Renamed chat").await;
    b.type_into(".rename", ENTER).await;
    b.wait_for(
        "the new title",
        "document.querySelector('.row.active .row-title')?.textContent === 'Renamed chat'",
    )
    .await;
    b.click(".row.active button[aria-label='Pin']").await;
    b.wait_for(
        "the pinned group",
        "document.querySelector('.group-title')?.textContent === 'Pinned'",
    )
    .await;

    // A reload keeps the session (refresh cookie) and the conversation.
    b.client.refresh().await.unwrap();
    b.wait_for(
        "the conversation after a reload",
        "document.querySelector('.row.active .row-title')?.textContent === 'Renamed chat' \
         && document.querySelectorAll('.message').length >= 8",
    )
    .await;
    b.screenshot("09-reloaded").await;

    // Settings: dark theme, remembered.
    b.click("a.account").await;
    b.wait_for("the settings page", "location.pathname === '/settings'")
        .await;
    b.click(".segmented button:nth-child(2)").await;
    b.wait_for("the dark theme", "document.documentElement.dataset.theme === 'dark'")
        .await;
    b.screenshot("10-settings-dark").await;
    b.click("a.back").await;
    b.wait_for(
        "the chat again",
        "document.querySelector('.row.active') || document.querySelector('.welcome')",
    )
    .await;
    b.click(".row a.row-link").await;
    b.wait_for("the conversation", "document.querySelectorAll('.message').length >= 8")
        .await;
    b.wait_for("typeset math again", "document.querySelector('.math.typeset .katex')")
        .await;
    b.screenshot("11-chat-dark").await;
    b.client.refresh().await.unwrap();
    b.wait_for(
        "the dark theme after a reload",
        "document.documentElement.dataset.theme === 'dark' && document.querySelector('.row')",
    )
    .await;

    // A phone: the sidebar is a drawer.
    b.resize(390, 844).await;
    b.wait_for(
        "the menu button",
        "getComputedStyle(document.querySelector('.menu')).display !== 'none'",
    )
    .await;
    b.screenshot("12-phone").await;
    b.click(".menu").await;
    b.wait_for("the drawer", "document.querySelector('.sidebar.open')")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    b.screenshot("13-phone-drawer").await;
    b.resize(1280, 860).await;

    // Delete with confirmation; a new chat with Ctrl+Shift+N is the welcome screen again.
    b.click(".row.active button[aria-label='Delete']").await;
    b.screenshot("14-delete-confirm").await;
    b.click(".confirm .danger-button").await;
    b.wait_for(
        "the empty list",
        "document.querySelectorAll('.row').length === 0 && location.pathname === '/c'",
    )
    .await;
    b.wait_for("the welcome screen again", "document.querySelector('.welcome')")
        .await;
    b.screenshot("15-after-delete").await;

    // Sign out, and the session is gone for a reload too.
    b.click(".sidebar-bottom .ghost").await;
    b.wait_for("the sign-in page", "location.pathname === '/login'").await;
    b.client.refresh().await.unwrap();
    b.wait_for(
        "still signed out",
        "location.pathname === '/login' && document.querySelector('#login')",
    )
    .await;
    // And back in through the sign-in form.
    b.type_into("#login", "ada@example.com").await;
    b.type_into("#password", "a long enough password").await;
    b.type_into("#password", ENTER).await;
    b.wait_for(
        "signed in again",
        "location.pathname === '/c' && document.querySelector('.welcome')",
    )
    .await;
    b.close().await;
}

#[tokio::test]
async fn a_model_still_downloading_shows_its_progress() {
    if let Err(reason) = browser::available() {
        if browser::skip_or_fail(&reason) {
            return;
        }
    }
    // About nine seconds of download from a fake Hugging Face Hub.
    let (_hub, server) = server_downloading_the_tiny_model(60, Duration::from_millis(150));
    if !ui_built(&server).await
        && browser::skip_or_fail("the server was built without the web UI (scripts/build-web.sh)")
    {
        return;
    }
    let b = Browser::start("ui-download", 1280, 860).await;
    b.goto(&server.url("/register")).await;
    b.wait_for("the sign-up page", "document.querySelector('#new-password')")
        .await;
    b.type_into("#email", "max@example.com").await;
    b.type_into("#username", "max").await;
    b.type_into("#new-password", "a long enough password").await;
    b.click("button[type=submit]").await;
    b.wait_for(
        "the download's progress on the welcome screen",
        "(() => { const p = document.querySelector('.welcome .model-loading progress'); \
           return p && p.value > 0 && p.value < 100 \
             && document.querySelector('.model-loading').textContent.includes('downloading'); })()",
    )
    .await;
    b.screenshot("downloading").await;
    b.wait_for(
        "the model ready",
        "!document.querySelector('.model-loading') && document.querySelector('.welcome')?.textContent.includes('runs on this server')",
    )
    .await;
    b.screenshot("downloaded").await;
    b.close().await;
}
