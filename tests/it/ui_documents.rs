//! The documents UI end to end in headless Chromium, against the real server with the real
//! all-MiniLM-L6-v2 and LanceDB: files added through the picker and by drag and drop, refused
//! ones with their error while the others go on, ingestion followed to "Ready", a failed file
//! with its reason and a retry, the filter, delete with confirmation; then in a chat the scope
//! picker (saved with the conversation), citation chips under the answer, and the viewer with
//! the cited passage highlighted beside the original PDF at its page. Screenshots go to
//! `screenshots/documents-*.png`.

use serde_json::Value;

use crate::browser::{self, Browser, ESCAPE};
use crate::common::{minilm, Client, Options, Remote, TestServer};
use crate::doc_files;
use crate::fakes::{Behaviour, FakeOpenAi};

/// The fake model's answer (the sources are the server's own: they come before it).
const ANSWER: [&str; 2] = ["The keeper's cat ", "is called Biscuit [1]."];

/// The status of the document named `name` in the list, as the page shows it.
fn status_of(name: &str) -> String {
    format!(
        "[...document.querySelectorAll('.document')].find(r => r.querySelector('.name')?.textContent === {name:?})?.dataset.status"
    )
}

#[tokio::test]
async fn documents_work_in_a_browser() {
    if let Err(reason) = browser::available() {
        if browser::skip_or_fail(&reason) {
            return;
        }
    }
    let fake = FakeOpenAi::start(Behaviour::slow_reply(&ANSWER, 20));
    let server = TestServer::start_with(Options {
        remotes: vec![Remote {
            id: "fake",
            kind: "openai",
            base_url: fake.base_url.clone(),
            fallback: vec![],
            capabilities: vec![],
        }],
        default_model: Some("fake"),
        embed_model: Some(minilm()),
        ..Default::default()
    });
    let page = reqwest::get(server.url("/")).await.unwrap().text().await.unwrap();
    if !page.contains("/boot.")
        && browser::skip_or_fail("the server was built without the web UI (scripts/build-web.sh)")
    {
        return;
    }
    // The files the picker sends: a 3-page PDF (the answer on page 2), notes in Markdown, a
    // broken PDF (accepted, then fails), an empty file and an executable (both refused).
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = files.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let picked = [
        write(
            "lighthouse.pdf",
            &doc_files::pdf(&[
                vec!["Chapter one. The lighthouse stands on a granite rock north of the bay."],
                vec!["Chapter two. The keeper's cat is called Biscuit and sleeps by the lamp."],
                vec!["Chapter three. Supply boats come every second Tuesday in summer."],
            ]),
        ),
        write(
            "notes.md",
            b"# Garden notes\n\nThe tomatoes were planted in April.\n\n## Harvest\n\nThe first tomatoes came in July.\n",
        ),
        write("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nthis is not a pdf at all"),
        write("empty.txt", b""),
        write("program.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00binary"),
    ];

    // The account, also used through the API to check what the page did.
    let mut c = Client::new(&server);
    c.signup("grace").await;
    let b = Browser::start("documents", 1280, 860).await;
    b.goto(&server.url("/login")).await;
    b.type_into("#login", "grace").await;
    b.type_into("#password", "grace-password-123").await;
    b.click("button[type=submit]").await;
    b.wait_for("the chat", "location.pathname === '/c'").await;

    // The documents page, empty.
    b.click("a.nav-link[href='/documents']").await;
    b.wait_for("the documents page", "location.pathname === '/documents'")
        .await;
    b.wait_for(
        "the empty list",
        "document.querySelector('.documents-body .empty-list')?.textContent.includes('No documents yet')",
    )
    .await;

    // Five files through the picker: two refused at once with their reason, three accepted.
    b.find("#file-picker")
        .await
        .send_keys(&picked.join("\n"))
        .await
        .expect("choose files");
    b.wait_for(
        "the two refused files",
        "document.querySelectorAll('.upload.failed').length === 2",
    )
    .await;
    let refused = b.text(".uploads").await;
    assert!(
        refused.contains("empty.txt") && refused.contains("program.exe"),
        "{refused}"
    );
    assert!(refused.to_lowercase().contains("empty"), "{refused}");
    b.wait_for(
        "the three accepted files in the list",
        "document.querySelectorAll('.document').length === 3",
    )
    .await;
    b.screenshot("01-uploading").await;
    b.wait_for(
        "the PDF and the notes to be ready",
        &format!(
            "{} === 'indexed' && {} === 'indexed'",
            status_of("lighthouse.pdf"),
            status_of("notes.md")
        ),
    )
    .await;
    b.wait_for(
        "the broken PDF to fail",
        &format!("{} === 'failed'", status_of("broken.pdf")),
    )
    .await;
    let list = b.text(".document-list").await;
    assert!(list.contains("3 pages"), "the PDF's pages are shown: {list}");
    assert!(list.contains("Ready") && list.contains("Failed"), "{list}");
    b.screenshot("02-indexed").await;

    // Dismissing a refused upload.
    b.click(".upload.failed button[aria-label='Dismiss']").await;
    b.wait_for(
        "one refused file left",
        "document.querySelectorAll('.upload.failed').length === 1",
    )
    .await;

    // A file dropped on the zone (a real drop event carrying a File).
    b.js(
        "const dt = new DataTransfer();
         dt.items.add(new File(['Meeting minutes. The budget for the roof repair is 4200 euros.'], 'minutes.txt', {type: 'text/plain'}));
         document.querySelector('.dropzone').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));",
    )
    .await;
    b.wait_for(
        "the dropped file to be ready",
        &format!("{} === 'indexed'", status_of("minutes.txt")),
    )
    .await;

    // Retry of the failed file: it runs again and fails again with its reason.
    let documents = c.get("/api/v1/documents").await.body;
    let id_of = |name: &str| -> String {
        documents["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["filename"] == name)
            .and_then(|d| d["id"].as_str())
            .unwrap_or_else(|| panic!("{name} in {documents}"))
            .to_owned()
    };
    let broken = id_of("broken.pdf");
    let before: Value = c.get(&format!("/api/v1/documents/{broken}")).await.body;
    b.click(&format!(".document[data-id='{broken}'] button.retry")).await;
    crate::common::eventually(|| {
        let c = &c;
        let broken = &broken;
        let before = &before;
        async move {
            let now = c.get(&format!("/api/v1/documents/{broken}")).await.body;
            (now["updated_at"] != before["updated_at"] && now["status"] == "failed").then_some(())
        }
    })
    .await;
    b.wait_for(
        "the reason of the failure",
        &format!("document.querySelector(\".document[data-id='{broken}'] .document-error\")?.textContent.length > 0"),
    )
    .await;

    // The filter: by name, by status.
    b.type_into("#document-filter", "notes").await;
    b.wait_for(
        "only the notes",
        "document.querySelectorAll('.document').length === 1 && document.querySelector('.document .name').textContent === 'notes.md'",
    )
    .await;
    // Cleared (WebDriver's clear sends no input event: the page is told as typing would).
    b.js("const f = document.querySelector('#document-filter'); f.value = ''; f.dispatchEvent(new Event('input', {bubbles: true}));")
        .await;
    b.wait_for(
        "all documents again",
        "document.querySelectorAll('.document').length === 4",
    )
    .await;
    b.js(
        "const s = document.querySelector('#status-filter'); s.value = 'failed'; s.dispatchEvent(new Event('change'));",
    )
    .await;
    b.wait_for(
        "only the failed file",
        "document.querySelectorAll('.document').length === 1 && document.querySelector('.document .name').textContent === 'broken.pdf'",
    )
    .await;
    b.screenshot("03-filtered").await;

    // Delete, with a confirmation that can be cancelled.
    let row = format!(".document[data-id='{broken}']");
    b.click(&format!("{row} button[aria-label='Delete document']")).await;
    b.click(&format!("{row} .confirm-inline .ghost")).await;
    b.wait_for(
        "the cancelled deletion",
        &format!("document.querySelector(\"{row} button[aria-label='Delete document']\")"),
    )
    .await;
    b.click(&format!("{row} button[aria-label='Delete document']")).await;
    b.click(&format!("{row} .danger-button")).await;
    b.wait_for("the deleted row gone", &format!("!document.querySelector(\"{row}\")"))
        .await;
    assert_eq!(c.get(&format!("/api/v1/documents/{broken}")).await.status, 404);
    b.js("const s = document.querySelector('#status-filter'); s.value = ''; s.dispatchEvent(new Event('change'));")
        .await;
    b.wait_for(
        "the three documents",
        "document.querySelectorAll('.document').length === 3",
    )
    .await;

    // A chat answering from chosen documents: the PDF only.
    let pdf = id_of("lighthouse.pdf");
    b.click("button.new-chat").await;
    b.wait_for("a new chat", "location.pathname === '/c'").await;
    b.js("const s = document.querySelector('#document-scope'); s.value = 'chosen'; s.dispatchEvent(new Event('change'));")
        .await;
    b.click(&format!(".scope-list input[value='{pdf}']")).await;
    b.type_into("#composer-input", "What is the keeper's cat called?").await;
    b.type_into("#composer-input", crate::browser::ENTER).await;
    b.wait_for(
        "the answer with its sources",
        "document.querySelector('.message.assistant:not(.streaming) .citation-chip') && !document.querySelector('.streaming')",
    )
    .await;
    let first = b.text(".message.assistant .citation-chip").await;
    assert!(
        first.contains("lighthouse.pdf") && first.contains("p. 2"),
        "first source: {first}"
    );
    b.screenshot("04-cited-answer").await;

    // The scope is the conversation's: saved, and shown again after a reload.
    let conversation = b.js("return location.pathname.split('/')[2]").await;
    let stored = c
        .get(&format!("/api/v1/conversations/{}", conversation.as_str().unwrap()))
        .await
        .body;
    assert_eq!(stored["settings"]["use_documents"], true, "{stored}");
    assert_eq!(stored["settings"]["document_ids"][0], pdf.as_str(), "{stored}");
    b.client.refresh().await.unwrap();
    b.wait_for(
        "the stored answer's sources",
        "document.querySelector('.message.assistant .citation-chip')",
    )
    .await;
    b.wait_for(
        "the scope after a reload",
        "document.querySelector('#document-scope').value === 'chosen'",
    )
    .await;

    // The viewer: the page's text with the passage marked, the original PDF at that page.
    b.click(".message.assistant .citation-chip").await;
    b.wait_for(
        "the highlighted passage",
        "document.querySelector('.viewer mark.cited')?.textContent.includes('Biscuit')",
    )
    .await;
    b.wait_for(
        "the original at its page",
        "/^blob:.*#page=2$/.test(document.querySelector('.viewer iframe.pdf')?.getAttribute('src') ?? '')",
    )
    .await;
    let title = b.text("#viewer-title").await;
    assert!(title.contains("lighthouse.pdf") && title.contains("p. 2"), "{title}");
    b.screenshot("05-viewer").await;
    b.type_into(".viewer button[aria-label='Close the source']", ESCAPE)
        .await;
    b.wait_for("the viewer closed", "!document.querySelector('.viewer')")
        .await;

    // No error of any kind on the way (the CSP allows the blob frame).
    let errors = b
        .js("return performance.getEntriesByType('resource').filter(e => e.responseStatus >= 500).length")
        .await;
    assert_eq!(errors, 0);
    b.close().await;
}
