//! Documents end to end through the real binary: upload (multipart, 202 at once), isolated
//! extraction, chunking and embedding with the real all-MiniLM-L6-v2, LanceDB in the temp
//! data directory, hybrid search, and chat answers (real SmolLM2) whose first citation names
//! the right file and page. Also isolation between users, bad files of every kind, restarts
//! and deletes during ingestion.

use serde_json::{json, Value};

use crate::common::{minilm, smollm2, Client, Options, TestServer};
use crate::doc_files;

/// A server with the real embedding model (and, with `chat`, the real SmolLM2).
fn server(chat: bool, config: &str) -> TestServer {
    TestServer::start_with(Options {
        embed_model: Some(minilm()),
        local_model: chat.then(smollm2),
        config: config.into(),
        ..Default::default()
    })
}

/// Uploads one file and returns its document id.
async fn upload_one(c: &Client, name: &str, bytes: &[u8]) -> String {
    let r = c.upload(&[(name, bytes)]).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let part = &r.body["documents"][0];
    assert!(part["id"].is_string(), "{name}: {part:?}");
    part["id"].as_str().unwrap().to_owned()
}

/// Waits until model `id` is loaded.
async fn wait_model(c: &Client, id: &str) {
    crate::common::eventually(|| async move {
        let r = c.get(&format!("/api/v1/models/{id}/status")).await;
        (r.body["status"] == "ready").then_some(())
    })
    .await;
}

/// The first citation of an answer from the documents to `question`.
async fn first_citation(c: &Client, question: &str, scope: Value) -> Value {
    // Only the sources matter here: a few tokens of answer are enough.
    let conversation = c.new_conversation(json!({"settings": {"max_tokens": 8}})).await;
    let mut body = json!({"content": question, "use_documents": true});
    if !scope.is_null() {
        body["document_ids"] = scope;
    }
    let mut stream = c
        .stream(&format!("/api/v1/conversations/{conversation}/messages"), body)
        .await;
    assert_eq!(stream.status, 200, "{:?}", stream.error_body);
    let events = stream.collect().await;
    let citations: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "citation")
        .map(|e| &e.data)
        .collect();
    // Citations come first, before any token.
    let first_token = events.iter().position(|e| e.event == "token").unwrap_or(events.len());
    let last_citation = events.iter().rposition(|e| e.event == "citation").unwrap_or(0);
    assert!(last_citation < first_token, "citations after tokens");
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    assert!(!citations.is_empty(), "no citation for {question:?}");
    for c in &citations {
        let relevance = c["relevance"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&relevance), "{c:?}");
        assert!(c["chunk_id"].is_string() && c["document_id"].is_string() && c["snippet"].is_string());
    }
    citations[0].clone()
}

#[tokio::test]
async fn every_format_is_indexed_searched_and_cited_with_its_page() {
    let server = server(true, "");
    let mut c = Client::new(&server);
    c.signup("dora").await;

    let manual = doc_files::fetched("manual/reference.pdf");
    let tables = doc_files::fetched("docx/tables.docx");
    let paper = doc_files::fetched("pdf/04-valid.pdf");
    let pdf = doc_files::pdf(&[
        vec![
            "Quarterly operations review.",
            "Staff numbers were stable across all sites.",
        ],
        vec![
            "Warehouse audit findings.",
            "The Tromso warehouse stores 4417 pallets of frozen salmon.",
        ],
    ]);
    let xlsx = doc_files::xlsx(&[
        (
            "Budget",
            vec![
                vec!["Department", "Budget"],
                vec!["Marketing", "120000"],
                vec!["Research", "340000"],
            ],
        ),
        ("Fleet", vec![vec!["Vehicle", "Mileage"], vec!["Blue van", "88231"]]),
    ]);
    let pptx = doc_files::pptx(&[
        ("Welcome", vec!["Agenda for the offsite"]),
        (
            "Volcano research",
            vec!["The Etna sensor array recorded 312 tremors in March."],
        ),
    ]);
    let odt = doc_files::odt(
        "Garden club minutes",
        &["The garden club agreed to plant 58 apple trees along the river path."],
        &[vec!["Member", "Role"], vec!["Ines", "Treasurer"]],
    );
    let html = b"<!DOCTYPE html><html><head><title>Recipe</title><script>var x = 'ignore me';</script></head><body><h1>Lighthouse soup</h1><p>The lighthouse soup needs exactly 7 saffron threads.</p></body></html>".to_vec();
    let csv = b"planet,moons\nMars,2\nJupiter,95\nKepler-22b,0\n".to_vec();
    let markdown =
        b"# Bicycle maintenance\n\n## Chains\n\nOil the chain of the tandem bicycle every 300 kilometres.\n".to_vec();
    let attachment = b"Attachment note: the vault combination is printed on the orange card.".to_vec();
    let eml = doc_files::eml(
        "Vault access",
        "Hello team, see the attached note.",
        "note.txt",
        &attachment,
    );
    let inner_zip = doc_files::zip(&[("deep.txt", b"The submarine periscope was repainted teal in 2024.")]);
    let archive = doc_files::zip(&[
        ("readme.txt", b"The lantern festival starts at dusk on the ninth day."),
        ("inner.zip", &inner_zip),
    ]);
    let files: Vec<(&str, &[u8])> = vec![
        ("reference.pdf", &manual),
        ("tables.docx", &tables),
        ("paper.pdf", &paper),
        ("audit.pdf", &pdf),
        ("finance.xlsx", &xlsx),
        ("offsite.pptx", &pptx),
        ("minutes.odt", &odt),
        ("soup.html", &html),
        ("planets.csv", &csv),
        ("bikes.md", &markdown),
        ("vault.eml", &eml),
        ("bundle.zip", &archive),
    ];
    // One request, every file; answered at once.
    let r = c.upload(&files).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let parts = r.body["documents"].as_array().unwrap().clone();
    assert_eq!(parts.len(), files.len());
    let mut ids = std::collections::HashMap::new();
    for (part, (name, _)) in parts.iter().zip(&files) {
        assert_eq!(part["filename"], *name);
        assert!(
            matches!(
                part["status"].as_str(),
                Some("queued" | "extracting" | "embedding" | "indexed")
            ),
            "{part:?}"
        );
        ids.insert(*name, part["id"].as_str().unwrap().to_owned());
    }
    let expected_kinds = [
        ("reference.pdf", "pdf"),
        ("tables.docx", "docx"),
        ("finance.xlsx", "xlsx"),
        ("offsite.pptx", "pptx"),
        ("minutes.odt", "odt"),
        ("soup.html", "html"),
        ("planets.csv", "csv"),
        ("bikes.md", "markdown"),
        ("vault.eml", "eml"),
        ("bundle.zip", "zip"),
    ];
    for (name, kind) in expected_kinds {
        let doc = c.wait_ingested(&ids[name]).await;
        assert_eq!(doc["status"], "indexed", "{name}: {doc:?}");
        assert_eq!(doc["kind"], kind, "{name}");
        assert!(doc["chunks"].as_u64().unwrap() > 0, "{name}");
        assert_eq!(doc["progress"]["fraction"], 1.0);
    }
    for name in ["paper.pdf", "audit.pdf"] {
        let doc = c.wait_ingested(&ids[name]).await;
        assert_eq!(doc["status"], "indexed", "{name}: {doc:?}");
    }
    let manual_doc = c.get(&format!("/api/v1/documents/{}", ids["reference.pdf"])).await;
    assert_eq!(manual_doc.body["pages"], 95, "{:?}", manual_doc.body);

    // Search finds the fact, with its page.
    let r = c
        .post(
            "/api/v1/documents/search",
            json!({"query": "How many pallets of frozen salmon are stored?"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let top = &r.body["hits"][0];
    assert_eq!(top["source"], "audit.pdf", "{:?}", r.body);
    assert_eq!(top["page"], 2);
    assert!(top["text"].as_str().unwrap().contains("4417"));

    // A chat answer cites the right file (and page) first, for every format.
    let questions: [(&str, &str, Option<u64>); 13] = [
        // The three real files from the registries.
        (
            "What is the default file name of the htmlhelp.map.file parameter?",
            "reference.pdf",
            Some(28),
        ),
        ("Which cell of the table is at the bottom right?", "tables.docx", None),
        (
            "What was the acute effect of 20-meter sprints on the nitric oxide level of footballers?",
            "paper.pdf",
            Some(1),
        ),
        (
            "How many pallets of frozen salmon does the Tromso warehouse store?",
            "audit.pdf",
            Some(2),
        ),
        ("What is the research department's budget?", "finance.xlsx", None),
        (
            "How many tremors did the Etna sensor array record?",
            "offsite.pptx",
            Some(2),
        ),
        ("How many apple trees will the garden club plant?", "minutes.odt", None),
        (
            "How many saffron threads does the lighthouse soup need?",
            "soup.html",
            None,
        ),
        ("How many moons does Jupiter have?", "planets.csv", None),
        ("How often should the tandem bicycle chain be oiled?", "bikes.md", None),
        ("Where is the vault combination printed?", "vault.eml", None),
        ("What colour was the submarine periscope repainted?", "bundle.zip", None),
        ("When does the lantern festival start?", "bundle.zip", None),
    ];
    for (question, source, page) in questions {
        let citation = first_citation(&c, question, Value::Null).await;
        assert_eq!(citation["source"], source, "{question}: {citation:?}");
        if let Some(page) = page {
            assert_eq!(citation["page"], page, "{question}: {citation:?}");
        }
    }
    // Scoped to one document that fits whole: still cited, most relevant passage first.
    let citation = first_citation(&c, "What does the audit say about salmon?", json!([ids["audit.pdf"]])).await;
    assert_eq!(
        (citation["source"].as_str(), citation["page"].as_u64()),
        (Some("audit.pdf"), Some(2))
    );
    // The stored answer keeps its citations.
    let list = c.get("/api/v1/conversations").await;
    let conversation = list.body["items"][0]["id"].as_str().unwrap().to_owned();
    let detail = c.get(&format!("/api/v1/conversations/{conversation}")).await;
    let answer = detail.body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(answer["citations"][0]["source"], "audit.pdf", "{answer:?}");

    // The viewer's page text and the original file.
    let audit = &ids["audit.pdf"];
    let page = c.get(&format!("/api/v1/documents/{audit}/sections/2")).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["page"], 2);
    assert!(page.body["text"].as_str().unwrap().contains("4417 pallets"));
    let file = c
        .request(reqwest::Method::GET, &format!("/api/v1/documents/{audit}/file"))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "application/pdf");
    assert_eq!(file.bytes().await.unwrap().as_ref(), pdf.as_slice());

    // Identical bytes again: the same document comes back.
    let again = c.upload(&[("audit-copy.pdf", &pdf)]).await;
    assert_eq!(again.body["documents"][0]["id"], *audit);
    assert_eq!(again.body["documents"][0]["duplicate"], true);

    // Listing and filters.
    let listed = c.get("/api/v1/documents?kind=pdf&limit=2").await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    assert!(listed.body["next_cursor"].is_string());
    let named = c.get("/api/v1/documents?q=PLANET").await;
    assert_eq!(named.body["items"][0]["filename"], "planets.csv");
}

#[tokio::test]
async fn another_users_documents_do_not_exist_for_them() {
    let server = server(false, "");
    let mut alice = Client::new(&server);
    alice.signup("alice").await;
    let mut bob = Client::new(&server);
    bob.signup("bob").await;
    let secret = b"Alice's private note: the spare key hides under the blue flowerpot.".to_vec();
    let id = upload_one(&alice, "private.txt", &secret).await;
    assert_eq!(alice.wait_ingested(&id).await["status"], "indexed");

    for path in [
        format!("/api/v1/documents/{id}"),
        format!("/api/v1/documents/{id}/status"),
        format!("/api/v1/documents/{id}/file"),
        format!("/api/v1/documents/{id}/sections/1"),
    ] {
        let r = bob.get(&path).await;
        assert_eq!((r.status, r.code()), (404, "NOT_FOUND"), "{path}");
    }
    assert_eq!(bob.delete(&format!("/api/v1/documents/{id}")).await.status, 404);
    assert_eq!(
        bob.post(&format!("/api/v1/documents/{id}/retry"), json!({}))
            .await
            .status,
        404
    );
    assert!(bob.get("/api/v1/documents").await.body["items"]
        .as_array()
        .unwrap()
        .is_empty());
    let r = bob
        .post("/api/v1/documents/search", json!({"query": "where is the spare key"}))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["hits"].as_array().unwrap().is_empty(), "{:?}", r.body);
    let r = bob
        .post(
            "/api/v1/documents/search",
            json!({"query": "spare key", "document_ids": [id]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND"));
    // Chat with Alice's document id: 404, no stream.
    let conversation = bob.new_conversation(json!({})).await;
    let stream = bob
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": "where is the key?", "document_ids": [id]}),
        )
        .await;
    assert_eq!(stream.status, 404);
    // The same bytes uploaded by Bob are Bob's own document.
    let bobs = upload_one(&bob, "mine.txt", &secret).await;
    assert_ne!(bobs, id);
    // Alice still finds hers.
    let r = alice
        .post("/api/v1/documents/search", json!({"query": "where is the spare key"}))
        .await;
    assert_eq!(r.body["hits"][0]["document_id"], id.as_str());
}

#[tokio::test]
async fn bad_files_get_a_clear_error_or_a_failed_status_and_nothing_else_breaks() {
    let server = server(false, "max_upload_bytes = 2000000\nextract_timeout_secs = 60\n");
    let mut c = Client::new(&server);
    c.signup("eve").await;
    let pdf = doc_files::pdf(&[vec!["A perfectly fine page about lighthouses."]]);
    let truncated_pdf = pdf[..pdf.len() / 2].to_vec();
    let docx = doc_files::fetched("docx/tables.docx");
    let truncated_docx = docx[..docx.len() / 3].to_vec();
    let xlsx = doc_files::xlsx(&[("S", vec![vec!["a", "b"], vec!["1", "2"]])]);
    let corrupt_xlsx = {
        let mut bytes = xlsx.clone();
        let mid = bytes.len() / 2;
        let end = (mid + 200).min(bytes.len());
        for b in &mut bytes[mid..end] {
            *b = 0x5A;
        }
        bytes
    };
    // 200 MB of zeros in a small zip: past the unpack limit.
    let bomb = {
        let mut out = std::io::Cursor::new(Vec::new());
        {
            let mut writer = zip::ZipWriter::new(&mut out);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(true);
            writer.start_file("zeros.txt", options).unwrap();
            let block = vec![b'0'; 1 << 20];
            for _ in 0..600 {
                std::io::Write::write_all(&mut writer, &block).unwrap();
            }
            writer.finish().unwrap();
        }
        out.into_inner()
    };
    assert!(bomb.len() < 2_000_000, "{}", bomb.len());
    // Zips nested deeper than the limit.
    let mut nested = doc_files::zip(&[("core.txt", b"the core")]);
    for level in 0..5 {
        let name = format!("level{level}.zip");
        nested = doc_files::zip(&[(name.as_str(), nested.as_slice())]);
    }
    // A PDF whose page tree claims 100,000 pages.
    let claims = String::from_utf8_lossy(&pdf)
        .replace("/Count 1", "/Count 100000")
        .into_bytes();
    let lying = doc_files::pdf(&[vec!["A PDF named like a text file."]]);
    let refused: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.txt", Vec::new(), "EMPTY_FILE"),
        (
            "program.pdf",
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00binary".to_vec(),
            "UNSUPPORTED_FILE_TYPE",
        ),
        ("huge.txt", vec![b'a'; 2_000_001], "PAYLOAD_TOO_LARGE"),
    ];
    let failing: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.pdf", truncated_pdf),
        ("broken.pdf", doc_files::fetched("pdf/03-invalid.pdf")),
        ("truncated.docx", truncated_docx),
        ("corrupt.xlsx", corrupt_xlsx),
        ("bomb.zip", bomb),
        ("nested.zip", nested),
        ("blank.md", b"   \n\n   \n".to_vec()),
    ];
    let mut parts: Vec<(&str, &[u8])> = refused.iter().map(|(n, b, _)| (*n, b.as_slice())).collect();
    parts.extend(failing.iter().map(|(n, b)| (*n, b.as_slice())));
    parts.push(("lies.txt", &lying));
    parts.push(("claims.pdf", &claims));
    let r = c.upload(&parts).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let answers = r.body["documents"].as_array().unwrap();
    for (i, (name, _, code)) in refused.iter().enumerate() {
        assert_eq!(answers[i]["filename"], *name);
        assert_eq!(answers[i]["code"], *code, "{name}: {:?}", answers[i]);
        assert!(answers[i]["error"].as_str().unwrap().len() > 5);
        assert!(answers[i].get("id").is_none());
    }
    for (j, (name, _)) in failing.iter().enumerate() {
        let part = &answers[refused.len() + j];
        let doc = c.wait_ingested(part["id"].as_str().unwrap()).await;
        assert_eq!(doc["status"], "failed", "{name}: {doc:?}");
        let error = doc["error"].as_str().unwrap();
        assert!(!error.is_empty(), "{name}");
        if *name == "bomb.zip" {
            assert!(error.contains("unpacks to more than"), "{error}");
        }
        if *name == "nested.zip" {
            assert!(error.contains("nested"), "{error}");
        }
        if *name == "blank.md" {
            assert_eq!(error, "no text found");
        }
    }
    // The lying extension is read for what it is.
    let lies = &answers[refused.len() + failing.len()];
    assert_eq!(lies["kind"], "pdf");
    assert_eq!(c.wait_ingested(lies["id"].as_str().unwrap()).await["status"], "indexed");
    // The page-count claim does not make it read 100,000 pages.
    let claims = c.wait_ingested(answers.last().unwrap()["id"].as_str().unwrap()).await;
    assert!(claims["pages"].as_u64().is_none_or(|p| p <= 1), "{claims:?}");

    // Not multipart, no parts, a wrong field name.
    let r = c.post("/api/v1/documents/upload", json!({"file": "x"})).await;
    assert_eq!((r.status, r.code()), (415, "UNSUPPORTED_MEDIA_TYPE"));
    let r = c.upload_parts(vec![("attachment", "a.txt", b"hello there")]).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["documents"][0]["code"], "VALIDATION_ERROR");
    // Bad search requests.
    for (body, field) in [
        (json!({"query": ""}), "query"),
        (json!({"query": "x", "limit": 0}), "limit"),
        (json!({"query": "x", "uploaded_after": "yesterday"}), "uploaded_after"),
        (json!({"query": "x", "mode": "psychic"}), "mode"),
    ] {
        let r = c.post("/api/v1/documents/search", body).await;
        assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"), "{field}: {:?}", r.body);
    }
    // The server is healthy and still ingests.
    assert_eq!(c.get("/health").await.status, 200);
    let ok = upload_one(&c, "fine.txt", b"After all that, a plain note about otters.").await;
    assert_eq!(c.wait_ingested(&ok).await["status"], "indexed");
}

#[tokio::test]
async fn ingestion_resumes_after_a_restart_and_deletes_leave_nothing() {
    let mut server = server(false, "");
    let mut c = Client::new(&server);
    c.signup("finn").await;
    // pdf-parse's 14-page paper: long enough to stop half-way.
    let paper = doc_files::fetched("pdf/01-valid.pdf");
    let id = upload_one(&c, "paper.pdf", &paper).await;
    // Stop while it is being ingested.
    crate::common::eventually(|| {
        let c = c.clone();
        let id = id.clone();
        async move {
            let r = c.get(&format!("/api/v1/documents/{id}/status")).await;
            (r.body["status"] == "embedding" && r.body["progress"]["chunks_done"].as_u64() > Some(0)).then_some(())
        }
    })
    .await;
    server.restart();
    let mut c2 = Client::new(&server);
    c2.token = c.token.clone();
    let doc = c2.wait_ingested(&id).await;
    assert_eq!(doc["status"], "indexed", "{doc:?}");
    // No chunk twice: every chunk index appears once in a broad search of its pages.
    let chunks = doc["chunks"].as_u64().unwrap();
    assert!(chunks > 20, "{chunks}");
    let r = c2
        .post(
            "/api/v1/documents/search",
            json!({"query": "the", "limit": 50, "mode": "text"}),
        )
        .await;
    let mut seen = std::collections::HashSet::new();
    for hit in r.body["hits"].as_array().unwrap() {
        let key = (hit["page"].clone(), hit["text"].as_str().unwrap().to_owned());
        assert!(seen.insert(key), "duplicate chunk {hit:?}");
    }
    assert!(!seen.is_empty());

    // Delete while another copy is being ingested: nothing of it remains.
    let mut copy = paper.clone();
    copy.extend_from_slice(b"\n% a different file\n");
    let second = upload_one(&c2, "copy.pdf", &copy).await;
    crate::common::eventually(|| {
        let c = c2.clone();
        let id = second.clone();
        async move {
            let r = c.get(&format!("/api/v1/documents/{id}/status")).await;
            (r.body["status"] == "embedding").then_some(())
        }
    })
    .await;
    assert_eq!(c2.delete(&format!("/api/v1/documents/{second}")).await.status, 204);
    assert_eq!(c2.get(&format!("/api/v1/documents/{second}")).await.status, 404);
    let files = std::fs::read_dir(server.dir.path().join("data/documents"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert!(!files.iter().any(|f| f.starts_with(&second)), "{files:?}");
    // Whatever the worker indexed before it noticed goes too: soon no chunk of it is found.
    crate::common::eventually(|| {
        let c = c2.clone();
        let id = second.clone();
        async move {
            let r = c
                .post("/api/v1/documents/search", json!({"query": "the", "limit": 50}))
                .await;
            let hits = r.body["hits"].as_array()?.clone();
            hits.iter().all(|h| h["document_id"] != id.as_str()).then_some(())
        }
    })
    .await;
    // The first document is untouched.
    assert_eq!(
        c2.get(&format!("/api/v1/documents/{id}")).await.body["status"],
        "indexed"
    );
}

#[tokio::test]
async fn a_new_embedding_model_reembeds_every_document_from_its_stored_text() {
    let mut server = server(false, "");
    let mut c = Client::new(&server);
    c.signup("gwen").await;
    let id = upload_one(
        &c,
        "ferry.md",
        b"# Ferry\n\nThe ferry to the island leaves at seven from the north pier.\n\n# Tickets\n\nTickets are sold on board.\n",
    )
    .await;
    let before = c.wait_ingested(&id).await;
    assert_eq!(before["embedding_model"], "minilm", "{before}");
    // The catalogue now names another default embedding model (the same weights under another
    // id: for Enclave a different model, so every vector is made again).
    let catalogue = server.dir.path().join("models.toml");
    let toml = std::fs::read_to_string(&catalogue).unwrap().replacen(
        "default_embed = \"minilm\"",
        "default_embed = \"minilm-b\"",
        1,
    ) + &format!(
        "\n[[models]]\nid = \"minilm-b\"\nrole = \"embed\"\nprovider = \"local\"\npath = \"{}\"\n",
        minilm().display()
    );
    std::fs::write(&catalogue, toml).unwrap();
    // The original file is gone: re-embedding must come from the stored text, not a re-read.
    std::fs::remove_file(server.dir.path().join("data/documents").join(&id)).ok();
    server.restart();
    let mut c2 = Client::new(&server);
    c2.token = c.token.clone();
    let after = crate::common::eventually(|| {
        let c = c2.clone();
        let id = id.clone();
        async move {
            let r = c.get(&format!("/api/v1/documents/{id}")).await;
            (r.body["embedding_model"] == "minilm-b" && r.body["status"] == "indexed").then_some(r.body)
        }
    })
    .await;
    assert_eq!(after["chunks"], before["chunks"], "{after}");
    assert_eq!(after["id"], before["id"]);
    let r = c2
        .post(
            "/api/v1/documents/search",
            json!({"query": "When does the boat to the island depart?", "mode": "vector"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let first = &r.body["hits"][0];
    assert_eq!(first["document_id"], id.as_str(), "{:?}", r.body);
    assert!(first["text"].as_str().unwrap().contains("seven"), "{first}");
}

#[tokio::test]
async fn documents_of_an_unavailable_embedding_model_are_still_found_by_their_words() {
    let mut server = server(false, "");
    let mut c = Client::new(&server);
    c.signup("hana").await;
    let id = upload_one(
        &c,
        "ferry.md",
        b"# Ferry\n\nThe ferry to the island leaves at seven from the north pier.\n",
    )
    .await;
    assert_eq!(c.wait_ingested(&id).await["status"], "indexed");
    // The catalogue loses minilm; its new default embedding model cannot load, so nothing is
    // re-embedded and the document keeps minilm's vectors, which no model can query now.
    let catalogue = server.dir.path().join("models.toml");
    let toml = std::fs::read_to_string(&catalogue)
        .unwrap()
        .replacen("default_embed = \"minilm\"", "default_embed = \"broken\"", 1)
        .replacen("id = \"minilm\"", "id = \"broken\"", 1)
        .replacen(&minilm().display().to_string(), "/nonexistent/model", 1);
    std::fs::write(&catalogue, toml).unwrap();
    server.restart();
    let mut c2 = Client::new(&server);
    c2.token = c.token.clone();
    // Hybrid search answers from the words alone.
    let r = c2
        .post("/api/v1/documents/search", json!({"query": "ferry island pier"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["hits"][0]["document_id"], id.as_str(), "{:?}", r.body);
    // Vector search cannot, and says why.
    let r = c2
        .post(
            "/api/v1/documents/search",
            json!({"query": "ferry island pier", "mode": "vector"}),
        )
        .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.code(), "EMBEDDING_UNAVAILABLE", "{:?}", r.body);
}

#[tokio::test]
async fn openai_embeddings_take_float_and_base64() {
    use base64::Engine;
    let server = server(false, "");
    let mut c = Client::new(&server);
    c.signup("gus").await;
    wait_model(&c, "minilm").await;
    // /ready reports the embedding model beside the chat model.
    let ready = c.get("/ready").await;
    assert_eq!(ready.body["default_embed_model"]["id"], "minilm", "{:?}", ready.body);
    assert_eq!(ready.body["default_embed_model"]["status"], "ready", "{:?}", ready.body);
    let r = c
        .post(
            "/v1/embeddings",
            json!({"model": "minilm", "input": ["hello world", "goodbye"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["object"], "list");
    let floats: Vec<f32> = serde_json::from_value(r.body["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(floats.len(), 384);
    let norm: f32 = floats.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    assert!(r.body["usage"]["prompt_tokens"].as_u64().unwrap() >= 3);
    // base64: the same vector, little-endian f32.
    let r = c
        .post(
            "/v1/embeddings",
            json!({"input": "hello world", "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(r.body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(decoded.len(), 384);
    for (a, b) in decoded.iter().zip(&floats) {
        assert!((a - b).abs() < 1e-5);
    }
    // MiniLM is not a Matryoshka model: shortened vectors are refused by name.
    let r = c.post("/v1/embeddings", json!({"input": "x", "dimensions": 64})).await;
    assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"), "{:?}", r.body);
    assert!(r.body["error"].as_str().unwrap().contains("dimensions"));
    let r = c
        .post("/v1/embeddings", json!({"input": "x", "encoding_format": "int8"}))
        .await;
    assert_eq!(r.status, 422);
    let r = c.post("/v1/embeddings", json!({"input": [[1, 2, 3]]})).await;
    assert_eq!(r.status, 422);
    let r = c.post("/v1/embeddings", json!({"model": "tiny", "input": "x"})).await;
    assert_eq!(r.status, 404);
}
