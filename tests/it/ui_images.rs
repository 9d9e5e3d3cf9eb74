//! Images in the web UI end to end in headless Chromium: attached through the picker, pasted
//! from the clipboard and dropped on the message box (real `paste` and `drop` events carrying
//! files), shown as thumbnails before sending with their state, a refused one with its reason,
//! one removed; the message sent to the model that can see; the images shown in the
//! conversation through authenticated blob URLs and enlarged on click; the model picker saying
//! which models see. Screenshots go to `screenshots/images-*.png`.

use std::io::Cursor;

use base64::Engine;
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use serde_json::json;

use crate::browser::{self, Browser, ENTER, ESCAPE};
use crate::common::{Client, Options, Remote, TestServer, LOCAL_MODEL};
use crate::fakes::{Behaviour, FakeOpenAi};

/// A `width × height` PNG of one colour.
fn png(width: u32, height: u32, colour: [u8; 3]) -> Vec<u8> {
    let image = RgbaImage::from_pixel(width, height, Rgba([colour[0], colour[1], colour[2], 255]));
    let mut bytes = Vec::new();
    DynamicImage::ImageRgba8(image)
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    bytes
}

/// JavaScript that dispatches `event` (`paste` on the message box, or `drop` on the composer)
/// carrying one file of `bytes` named `name` with the MIME type `mime`.
fn file_event(event: &str, name: &str, mime: &str, bytes: &[u8]) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    let (target, constructor, field) = match event {
        "paste" => ("#composer-input", "ClipboardEvent", "clipboardData"),
        _ => (".composer", "DragEvent", "dataTransfer"),
    };
    format!(
        "const bytes = Uint8Array.from(atob('{data}'), c => c.charCodeAt(0));
         const dt = new DataTransfer();
         dt.items.add(new File([bytes], '{name}', {{type: '{mime}'}}));
         document.querySelector('{target}').dispatchEvent(new {constructor}('{event}', {{{field}: dt, bubbles: true, cancelable: true}}));"
    )
}

#[tokio::test]
async fn images_work_in_a_browser() {
    if let Err(reason) = browser::available() {
        if browser::skip_or_fail(&reason) {
            return;
        }
    }
    let eye = FakeOpenAi::start(Behaviour::slow_reply(&["Three ", "coloured ", "squares."], 30));
    let server = TestServer::start_with(Options {
        remotes: vec![Remote {
            id: "eye",
            kind: "openai",
            base_url: eye.base_url.clone(),
            fallback: vec![],
            capabilities: vec!["vision"],
        }],
        default_vision: Some("eye"),
        ..Default::default()
    });
    let page = reqwest::get(server.url("/")).await.unwrap().text().await.unwrap();
    if !page.contains("/boot.")
        && browser::skip_or_fail("the server was built without the web UI (scripts/build-web.sh)")
    {
        return;
    }
    let mut c = Client::new(&server);
    c.signup("iris").await;
    let files = tempfile::tempdir().unwrap();
    let picked = files.path().join("red.png");
    std::fs::write(&picked, png(40, 30, [220, 30, 30])).unwrap();

    let b = Browser::start("images", 1280, 860).await;
    b.goto(&server.url("/login")).await;
    b.type_into("#login", "iris").await;
    b.type_into("#password", "iris-password-123").await;
    b.click("button[type=submit]").await;
    b.wait_for("the chat", "location.pathname === '/c'").await;

    // One image through the picker, one pasted, one dropped; an SVG pasted is refused with
    // its reason; a text file dropped is not an image and is left out.
    b.find("#image-picker")
        .await
        .send_keys(&picked.display().to_string())
        .await
        .expect("choose an image");
    b.js(&file_event(
        "paste",
        "green.png",
        "image/png",
        &png(20, 20, [30, 200, 30]),
    ))
    .await;
    b.js(&file_event(
        "drop",
        "blue.png",
        "image/png",
        &png(16, 24, [30, 30, 220]),
    ))
    .await;
    b.js(&file_event(
        "paste",
        "drawing.svg",
        "image/svg+xml",
        br#"<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>"#,
    ))
    .await;
    b.js(&file_event("drop", "notes.txt", "text/plain", b"not an image"))
        .await;
    b.wait_for(
        "three images ready and the SVG refused",
        "document.querySelectorAll('.attachment[data-state=ready]').length === 3 \
         && document.querySelector('.attachment[data-state=failed] .attachment-error')?.textContent.includes('SVG')",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelectorAll('.attachment').length").await,
        json!(4)
    );
    // The local model cannot see: the page says who will answer instead (and that it is remote).
    let note = b.text(".sight-note").await;
    assert!(note.contains("eye") && note.contains("p0"), "{note}");
    b.screenshot("01-attached").await;

    // The refused one and the dropped one are removed; the pasted text stays the draft.
    b.click(".attachment[data-state=failed] .remove").await;
    b.click(".attachment:nth-child(3) .remove").await;
    b.wait_for(
        "two images left",
        "document.querySelectorAll('.attachment').length === 2",
    )
    .await;
    b.type_into("#composer-input", "What colours are these?").await;
    b.type_into("#composer-input", ENTER).await;
    b.wait_for(
        "the answer",
        "document.querySelector('.message.assistant:not(.streaming)')?.textContent.includes('squares')",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelectorAll('.attachment').length").await,
        json!(0)
    );

    // The model that sees got both images (the local model cannot see).
    let request = eye
        .chat_requests()
        .into_iter()
        .find(|r| r.body.to_string().contains("What colours are these?"))
        .expect("the vision model was asked");
    let parts = request.body["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(parts[1..].iter().all(|p| p["image_url"]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,")));

    // Shown in the conversation from the server (after a reload: no local copies), through
    // blob URLs, and enlarged on click; Esc closes.
    let address = b.js("return location.href").await;
    b.goto(address.as_str().unwrap()).await;
    b.wait_for(
        "the two images of the message, loaded",
        "[...document.querySelectorAll('.message.user .thumb img')].filter(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:')).length === 2",
    )
    .await;
    b.screenshot("02-sent").await;
    b.click(".message.user .thumb").await;
    b.wait_for(
        "the enlarged image",
        "document.querySelector('.lightbox img')?.naturalWidth === 40",
    )
    .await;
    b.screenshot("03-enlarged").await;
    b.type_into("body", ESCAPE).await;
    b.wait_for("the viewer closed", "!document.querySelector('.lightbox')")
        .await;
    let detail = c.get("/api/v1/conversations").await;
    let conversation = detail.body["items"][0]["id"].as_str().unwrap().to_owned();
    let detail = c.get(&format!("/api/v1/conversations/{conversation}")).await;
    assert_eq!(detail.body["messages"][0]["attachments"].as_array().unwrap().len(), 2);
    assert_eq!(detail.body["messages"][1]["model"], "eye");
    assert_eq!(
        detail.body["model"],
        serde_json::Value::Null,
        "the conversation keeps its model"
    );

    // The model picker says which models see.
    b.click("button[aria-label='Conversation settings']").await;
    let options = b.text("#model").await;
    assert!(options.contains("eye · sees images"), "{options}");
    assert!(!options.contains(&format!("{LOCAL_MODEL} · sees")), "{options}");
    b.screenshot("04-picker").await;
    b.close().await;
}
