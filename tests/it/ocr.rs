//! OCR over real HTTP with real scans (the ocrmypdf sdist's test pages, fetched by
//! scripts/fetch-test-documents.sh) and the real all-MiniLM-L6-v2: scanned PDFs and a photo of
//! a page become searchable with their page numbers, the citation viewer's text says it came
//! from OCR, and a question about a scan is answered from the right document and page.

use serde_json::{json, Value};

use crate::common::{minilm, Client, Options, Remote, TestServer};
use crate::doc_files::fetched;
use crate::fakes::{Behaviour, FakeOpenAi};

/// The JPEG that makes up the scanned page of c03-29.pdf (stored as is: DCTDecode).
fn jpeg_of_the_page(pdf: &[u8]) -> Vec<u8> {
    let start = pdf
        .windows(3)
        .position(|w| w == [0xFF, 0xD8, 0xFF])
        .expect("a JPEG stream");
    let end = start
        + pdf[start..]
            .windows(9)
            .position(|w| w == b"endstream")
            .expect("the stream's end");
    let mut jpeg = pdf[start..end].to_vec();
    while jpeg.last().is_some_and(|b| b.is_ascii_whitespace()) {
        jpeg.pop();
    }
    jpeg
}

async fn upload_one(c: &Client, name: &str, bytes: &[u8]) -> Value {
    let reply = c.upload(&[(name, bytes)]).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let id = reply.body["documents"][0]["id"].as_str().expect("accepted").to_owned();
    c.wait_ingested(&id).await
}

#[tokio::test]
async fn scans_and_photos_become_searchable_by_ocr_with_their_pages() {
    let fake = FakeOpenAi::start(Behaviour::reply(&["From the scan."]));
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
    let mut c = Client::new(&server);
    c.signup("olga").await;

    let book = fetched("scans/c03-29.pdf");
    let brochure = upload_one(&c, "cardinal.pdf", &fetched("scans/cardinal.pdf")).await;
    let page = upload_one(&c, "c03-29.pdf", &book).await;
    let photo = upload_one(&c, "photo-of-page.jpg", &jpeg_of_the_page(&book)).await;
    for (document, kind, pages) in [
        (&brochure, "pdf", json!(4)),
        (&page, "pdf", json!(1)),
        (&photo, "image", Value::Null),
    ] {
        assert_eq!(document["status"], "indexed", "{document}");
        assert_eq!(document["kind"], kind);
        assert_eq!(document["pages"], pages);
        assert_eq!(document["pages_without_text"], json!([]), "every scanned page was read");
        assert!(document["chunks"].as_u64().unwrap() >= 1);
    }

    // The recognised text, page by page, marked as OCR.
    let id = brochure["id"].as_str().unwrap();
    for index in 1..=4 {
        let section = c.get(&format!("/api/v1/documents/{id}/sections/{index}")).await;
        assert_eq!(section.body["page"], index);
        assert_eq!(section.body["ocr"], true);
        let text = section.body["text"].as_str().unwrap();
        for word in ["LinnSequencer", "MIDI", "SMPTE", "Oxnard", "Tarzana"] {
            assert!(text.contains(word), "page {index}: {word} missing");
        }
    }
    let photo_text = c
        .get(&format!(
            "/api/v1/documents/{}/sections/1",
            photo["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(photo_text.body["ocr"], true);
    assert!(photo_text.body["text"].as_str().unwrap().contains("Watson"));

    // Search finds words that exist only in pictures.
    let hits = c
        .post(
            "/api/v1/documents/search",
            json!({"query": "Deacon Winn snuff-box", "mode": "text", "limit": 3}),
        )
        .await;
    let sources: Vec<&str> = hits.body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"c03-29.pdf") && sources.contains(&"photo-of-page.jpg"),
        "{sources:?}"
    );

    // A question about the scanned book page is answered from it, cited at its page, as OCR.
    let conversation = c.new_conversation(json!({})).await;
    let ask = |question: &str, ids: Vec<&str>| json!({"content": question, "document_ids": ids});
    let mut stream = c
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            ask(
                "What did Miss Watson say about praying, and who is Deacon Winn?",
                vec![id, page["id"].as_str().unwrap()],
            ),
        )
        .await;
    assert_eq!(stream.status, 200, "{:?}", stream.error_body);
    let events = stream.collect().await;
    let first = events.iter().find(|e| e.event == "citation").expect("a citation");
    assert_eq!(first.data["source"], "c03-29.pdf", "{first:?}");
    assert_eq!(first.data["page"], 1);
    assert_eq!(first.data["ocr"], true);
    // The model was given the recognised words.
    let asked = fake
        .chat_requests()
        .into_iter()
        .rfind(|r| r.body.to_string().contains("Deacon Winn?"))
        .expect("the answer request");
    assert!(
        asked.body.to_string().contains("Watson"),
        "the sources carry the OCR'd text"
    );

    // And one about the brochure from the brochure.
    let mut stream = c
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            ask(
                "On which street is Linn Electronics in Tarzana?",
                vec![id, page["id"].as_str().unwrap()],
            ),
        )
        .await;
    let events = stream.collect().await;
    let first = events.iter().find(|e| e.event == "citation").expect("a citation");
    assert_eq!(first.data["source"], "cardinal.pdf", "{first:?}");
    assert!((1..=4).contains(&first.data["page"].as_u64().unwrap()));
    assert_eq!(first.data["ocr"], true);
}
