//! Images over real HTTP: uploads judged by their bytes and stored without metadata, shown to
//! their owner only, attached to messages, sent to a model that can see (the fakes check the
//! OpenAI and Gemini wire formats), refused with `MODEL_CANNOT_SEE` when none can, deleted with
//! their conversation; and `/v1` `image_url` parts with `data:` URLs.

use std::io::Cursor;

use base64::Engine;
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use serde_json::{json, Value};

use crate::common::{Client, Options, Remote, TestServer, LOCAL_MODEL};
use crate::fakes::{Behaviour, FakeGemini, FakeOpenAi, FakeServer, RecordedRequest};

/// A `width × height` picture whose pixels say where they are.
fn picture(width: u32, height: u32) -> RgbaImage {
    RgbaImage::from_fn(width, height, |x, y| {
        Rgba([(x * 37 % 256) as u8, (y * 53 % 256) as u8, 120, 255])
    })
}

fn encoded(image: &RgbaImage, format: ImageFormat) -> Vec<u8> {
    let image = match format {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(image.clone()).to_rgb8()),
        _ => DynamicImage::ImageRgba8(image.clone()),
    };
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

fn png_size(png: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory_with_format(png, ImageFormat::Png).expect("a PNG");
    (image.width(), image.height())
}

/// The chunk types of a PNG, in order.
fn png_chunks(png: &[u8]) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let length = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        chunks.push(String::from_utf8_lossy(&png[at + 4..at + 8]).into_owned());
        at += 12 + length;
    }
    chunks
}

/// The accepted parts' image ids of an upload reply, in order (None for refused parts).
fn ids(reply: &crate::common::Reply) -> Vec<Option<String>> {
    reply.body["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|p| (p["status"] == "accepted").then(|| p["id"].as_str().unwrap().to_owned()))
        .collect()
}

async fn upload_one(c: &Client, bytes: &[u8]) -> String {
    let reply = c.upload_images(&[("photo.png", bytes)]).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    ids(&reply)[0].clone().expect("accepted")
}

async fn image_bytes(c: &Client, id: &str) -> (u16, Vec<u8>) {
    let response = c
        .request(reqwest::Method::GET, &format!("/api/v1/images/{id}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

fn remote(id: &'static str, kind: &'static str, fake: &FakeServer, vision: bool) -> Remote {
    Remote {
        id,
        kind,
        base_url: fake.base_url.clone(),
        fallback: vec![],
        capabilities: if vision { vec!["vision"] } else { vec![] },
    }
}

/// The newest request that asked for an answer (not for a title).
fn last_answer_request(fake: &FakeServer) -> RecordedRequest {
    fake.chat_requests()
        .into_iter()
        .rfind(|r| !r.body.to_string().contains("You write short titles"))
        .expect("an answer request")
}

#[tokio::test]
async fn uploads_are_reencoded_without_metadata_and_shown_to_their_owner_only() {
    let server = TestServer::start();
    let mut ann = Client::new(&server);
    ann.signup("ann").await;
    let mut bob = Client::new(&server);
    bob.signup("bob").await;

    let original = picture(6, 4);
    let png = encoded(&original, ImageFormat::Png);
    let jpeg = encoded(&original, ImageFormat::Jpeg);
    let webp = encoded(&original, ImageFormat::WebP);
    let gif = encoded(&original, ImageFormat::Gif);
    let dot = encoded(&picture(1, 1), ImageFormat::Png);
    // A polyglot: a real PNG with a ZIP archive appended; the stored image loses the archive.
    let mut polyglot = png.clone();
    polyglot.extend_from_slice(b"PK\x03\x04 an archive with a payload");
    let reply = ann
        .upload_images(&[
            ("a.png", &png),
            ("b.jpg", &jpeg),
            ("c.webp", &webp),
            ("d.gif", &gif),
            ("dot.png", &dot),
            ("poly.png", &polyglot),
        ])
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let parts = reply.body["images"].as_array().unwrap();
    assert_eq!(parts.len(), 6);
    for part in parts {
        assert_eq!(part["status"], "accepted", "{part}");
        assert_eq!(part["media_type"], "image/png");
        assert!(part["conversation_id"].is_null());
    }
    assert_eq!(
        (parts[4]["width"].as_u64(), parts[4]["height"].as_u64()),
        (Some(1), Some(1))
    );
    let ids: Vec<String> = ids(&reply).into_iter().map(Option::unwrap).collect();

    for (id, part) in ids.iter().zip(parts) {
        let (status, bytes) = image_bytes(&ann, id).await;
        assert_eq!(status, 200);
        assert_eq!(bytes.len() as u64, part["size_bytes"].as_u64().unwrap());
        let (w, h) = png_size(&bytes);
        assert_eq!(
            (u64::from(w), u64::from(h)),
            (part["width"].as_u64().unwrap(), part["height"].as_u64().unwrap())
        );
        // Pixels only: no text, EXIF, colour-profile or time chunk.
        assert!(
            png_chunks(&bytes)
                .iter()
                .all(|c| ["IHDR", "PLTE", "IDAT", "IEND"].contains(&c.as_str())),
            "{:?}",
            png_chunks(&bytes)
        );
        assert!(!bytes.windows(4).any(|w| w == b"PK\x03\x04"));
    }
    // PNG and WebP are lossless: the very pixels come back.
    for id in [&ids[0], &ids[2]] {
        let (_, bytes) = image_bytes(&ann, id).await;
        let back = image::load_from_memory_with_format(&bytes, ImageFormat::Png)
            .unwrap()
            .to_rgba8();
        assert_eq!(back, original);
    }
    let response = ann
        .request(reqwest::Method::GET, &format!("/api/v1/images/{}", ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let info = ann.get(&format!("/api/v1/images/{}/info", ids[1])).await;
    assert_eq!(
        (info.body["width"].as_u64(), info.body["height"].as_u64()),
        (Some(6), Some(4))
    );

    // Another user: it does not exist.
    let (status, _) = image_bytes(&bob, &ids[0]).await;
    assert_eq!(status, 404);
    let r = bob.get(&format!("/api/v1/images/{}/info", ids[0])).await;
    assert_eq!((r.status, r.code()), (404, "IMAGE_NOT_FOUND"));
    let r = bob.delete(&format!("/api/v1/images/{}", ids[0])).await;
    assert_eq!((r.status, r.code()), (404, "IMAGE_NOT_FOUND"));
    // Nor may bob send it.
    let conversation = bob.new_conversation(json!({})).await;
    let r = bob
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": "whose?", "attachments": [{"type": "image", "image_id": ids[0]}]}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_body["code"].as_str()),
        (404, Some("IMAGE_NOT_FOUND"))
    );
    // Without a token: nothing.
    let anonymous = Client::new(&server);
    let (status, _) = image_bytes(&anonymous, &ids[0]).await;
    assert_eq!(status, 401);

    // An unsent image can be deleted by its owner.
    let r = ann.delete(&format!("/api/v1/images/{}", ids[5])).await;
    assert_eq!(r.status, 204);
    let (status, _) = image_bytes(&ann, &ids[5]).await;
    assert_eq!(status, 404);
    assert!(!server.dir.path().join(format!("data/images/{}.png", ids[5])).exists());
    assert!(server.dir.path().join(format!("data/images/{}.png", ids[0])).exists());
}

#[tokio::test]
async fn bad_images_each_get_their_error_and_the_server_stays_healthy() {
    let server = TestServer::start_with(Options {
        config: "max_image_bytes = 100000\nmax_images_per_message = 3\n".into(),
        ..Options::default()
    });
    let mut c = Client::new(&server);
    c.signup("carol").await;

    let png = encoded(&picture(8, 8), ImageFormat::Png);
    let mut bomb = encoded(&picture(16, 16), ImageFormat::Jpeg);
    let sof = bomb
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG");
    bomb[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic rest of a photo";
    // A GIF header in front of a script: a polyglot that no decoder reads as a picture.
    let gif_script = b"GIF89a/*\x01\x01*/=1;alert(document.domain)//";
    let noise: Vec<u8> = (0..150_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let cases: [(&str, &[u8], u16, &str, &str); 6] = [
        (
            "truncated.png",
            &png[..png.len() / 2],
            422,
            "IMAGE_UNREADABLE",
            "could not be read",
        ),
        ("bomb.jpg", &bomb, 422, "IMAGE_DIMENSIONS_TOO_LARGE", "60000 x 60000"),
        ("drawing.svg", svg, 415, "UNSUPPORTED_IMAGE_FORMAT", "SVG"),
        ("photo.heic", heic, 415, "UNSUPPORTED_IMAGE_FORMAT", "HEIC"),
        ("polyglot.gif", gif_script, 422, "IMAGE_UNREADABLE", "could not be read"),
        ("huge.png", &noise, 413, "IMAGE_TOO_LARGE", "100000"),
    ];
    for (name, bytes, _, code, words) in cases {
        let reply = c.upload_images(&[(name, bytes)]).await;
        assert_eq!(reply.status, 201, "{name}: {:?}", reply.body);
        let part = &reply.body["images"][0];
        assert_eq!(part["status"], "refused", "{name}");
        assert_eq!(part["code"], code, "{name}: {part}");
        assert_eq!(part["filename"], name);
        assert!(part["error"].as_str().unwrap().contains(words), "{name}: {part}");
    }
    // The same codes, with their statuses, for the same bytes sent inline to /v1.
    for (name, bytes, status, code, _) in cases {
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        let r = c
            .post(
                "/v1/chat/completions",
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}),
            )
            .await;
        assert_eq!((r.status, r.code()), (status, code), "{name}: {:?}", r.body);
    }

    // More images than a message may carry: the parts past the maximum are refused.
    let reply = c
        .upload_images(&[("1.png", &png), ("2.png", &png), ("3.png", &png), ("4.png", &png)])
        .await;
    let codes: Vec<&str> = reply.body["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap_or("accepted"))
        .collect();
    assert_eq!(codes, ["accepted", "accepted", "accepted", "TOO_MANY_IMAGES"]);
    let mut accepted: Vec<String> = ids(&reply).into_iter().flatten().collect();
    accepted.push(upload_one(&c, &png).await);
    let conversation = c.new_conversation(json!({})).await;
    let attachments: Vec<Value> = accepted
        .iter()
        .map(|id| json!({"type": "image", "image_id": id}))
        .collect();
    let r = c
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": "four", "attachments": attachments}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_body["code"].as_str()),
        (422, Some("TOO_MANY_IMAGES"))
    );
    let r = c
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": "a video", "attachments": [{"type": "video", "image_id": accepted[0]}]}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_body["code"].as_str()),
        (422, Some("VALIDATION_ERROR"))
    );
    // Not multipart at all; no part named "file".
    let r = c.post("/api/v1/images", json!({"image": "x"})).await;
    assert_eq!((r.status, r.code()), (415, "UNSUPPORTED_MEDIA_TYPE"));
    let r = c.multipart("/api/v1/images", vec![("picture", "a.png", &png)]).await;
    assert_eq!(r.body["images"][0]["code"], "VALIDATION_ERROR");

    // Nothing of it was stored or broke the server.
    let detail = c.get(&format!("/api/v1/conversations/{conversation}")).await;
    assert!(detail.body["messages"].as_array().unwrap().is_empty());
    assert_eq!(c.get("/health").await.status, 200);
    assert_eq!(c.get("/ready").await.status, 200);
}

#[tokio::test]
async fn without_a_model_that_can_see_images_are_refused_before_streaming() {
    let server = TestServer::start();
    let mut c = Client::new(&server);
    c.signup("dave").await;
    let png = encoded(&picture(5, 5), ImageFormat::Png);
    let image = upload_one(&c, &png).await;
    let conversation = c.new_conversation(json!({})).await;
    let r = c
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": "what is this?", "attachments": [{"type": "image", "image_id": image}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_body["code"], "MODEL_CANNOT_SEE");
    let message = r.error_body["error"].as_str().unwrap();
    assert!(
        message.contains(LOCAL_MODEL) && message.contains("capabilities = [\"vision\"]"),
        "{message}"
    );
    // Nothing stored, the image still free to send elsewhere.
    let detail = c.get(&format!("/api/v1/conversations/{conversation}")).await;
    assert!(detail.body["messages"].as_array().unwrap().is_empty());
    assert!(c.get(&format!("/api/v1/images/{image}/info")).await.body["conversation_id"].is_null());

    // The models list says who can see: nobody here.
    let models = c.get("/api/v1/models").await;
    for m in models.body["models"].as_array().unwrap() {
        assert_eq!(m["capabilities"], json!([]), "{m}");
        assert_eq!(m["default_vision"], false);
    }

    // /v1: the same refusal in OpenAI's shape; remote URLs are never fetched.
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    let r = c
        .post(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}]}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "model_cannot_see");
    let r = c
        .post(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}}]}]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "IMAGE_URL_NOT_ALLOWED"));
    let r = c
        .post(
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "VALIDATION_ERROR"));
    assert!(r.body["error"].as_str().unwrap().contains("input_audio"));
}

#[tokio::test]
async fn images_reach_the_model_that_can_see_and_go_with_their_conversation() {
    let eye = FakeOpenAi::start(Behaviour::reply(&["A red", " square."]));
    let gem = FakeGemini::start(Behaviour::reply(&["A ", "square."]));
    let server = TestServer::start_with(Options {
        remotes: vec![remote("eye", "openai", &eye, true), remote("gem", "gemini", &gem, true)],
        default_vision: Some("eye"),
        ..Options::default()
    });
    let mut c = Client::new(&server);
    c.signup("erin").await;
    let models = c.get("/api/v1/models").await;
    let by_id = |id: &str| {
        models.body["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id("eye")["capabilities"], json!(["vision"]));
    assert_eq!(by_id("eye")["default_vision"], true);
    assert_eq!(by_id(LOCAL_MODEL)["capabilities"], json!([]));

    // The conversation's model (the local one) cannot see: the vision model answers, and the
    // conversation keeps its model.
    let png = encoded(&picture(7, 3), ImageFormat::Png);
    let first = upload_one(&c, &png).await;
    let second = upload_one(&c, &encoded(&picture(2, 9), ImageFormat::Jpeg)).await;
    let conversation = c.new_conversation(json!({"model": LOCAL_MODEL})).await;
    let mut stream = c
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": "What is in these?", "attachments": [
                {"type": "image", "image_id": first}, {"type": "image", "image_id": second}]}),
        )
        .await;
    assert_eq!(stream.status, 200, "{:?}", stream.error_body);
    let events = stream.collect().await;
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    let request = last_answer_request(&eye);
    let user = request.body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(user["role"], "user");
    let parts = user["content"].as_array().expect("content parts");
    assert_eq!(parts[0], json!({"type": "text", "text": "What is in these?"}));
    for (part, id) in parts[1..].iter().zip([&first, &second]) {
        assert_eq!(part["type"], "image_url");
        let url = part["image_url"]["url"].as_str().unwrap();
        let data = url.strip_prefix("data:image/png;base64,").expect("a PNG data URL");
        let sent = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
        assert_eq!(sent, image_bytes(&c, id).await.1, "the stored PNG, exactly");
    }
    assert_eq!(parts.len(), 3);
    let detail = c.get(&format!("/api/v1/conversations/{conversation}")).await;
    let messages = detail.body["messages"].as_array().unwrap();
    assert_eq!(
        messages[0]["attachments"],
        json!([{"type": "image", "image_id": first}, {"type": "image", "image_id": second}])
    );
    assert_eq!(messages[1]["model"], "eye", "the answer records who answered");
    assert_eq!(detail.body["model"], LOCAL_MODEL, "the conversation keeps its model");
    let info = c.get(&format!("/api/v1/images/{first}/info")).await;
    assert_eq!(info.body["conversation_id"], conversation.as_str());
    let r = c.delete(&format!("/api/v1/images/{first}")).await;
    assert_eq!((r.status, r.code()), (409, "IMAGE_IN_USE"));

    // A follow-up without images goes to the conversation's own model.
    let mut stream = c
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": "Thanks"}),
        )
        .await;
    assert_eq!(stream.status, 200);
    stream.collect().await;
    let detail = c.get(&format!("/api/v1/conversations/{conversation}")).await;
    assert_eq!(detail.body["messages"][3]["model"], LOCAL_MODEL);

    // Gemini, when the conversation's model can see: inline_data parts.
    let gemini_conversation = c.new_conversation(json!({"model": "gem"})).await;
    // The image is carried by the first conversation: sending it again makes a copy.
    let mut stream = c
        .stream(
            &format!("/api/v1/conversations/{gemini_conversation}/messages"),
            json!({"content": "And this?", "attachments": [{"type": "image", "image_id": first}]}),
        )
        .await;
    assert_eq!(stream.status, 200, "{:?}", stream.error_body);
    stream.collect().await;
    let request = last_answer_request(&gem);
    let contents = request.body["contents"].as_array().unwrap();
    let parts = contents.last().unwrap()["parts"].as_array().unwrap();
    assert_eq!(parts[0], json!({"text": "And this?"}));
    assert_eq!(parts[1]["inline_data"]["mime_type"], "image/png");
    let sent = base64::engine::general_purpose::STANDARD
        .decode(parts[1]["inline_data"]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(sent, image_bytes(&c, &first).await.1);
    let detail = c.get(&format!("/api/v1/conversations/{gemini_conversation}")).await;
    let copy = detail.body["messages"][0]["attachments"][0]["image_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(copy, first, "a copy, so that each conversation owns its images");

    // /v1: a data URL goes to the vision model, re-encoded.
    let jpeg = encoded(&picture(4, 4), ImageFormat::Jpeg);
    let url = format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&jpeg)
    );
    let r = c
        .post(
            "/v1/chat/completions",
            json!({"model": LOCAL_MODEL, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["model"], "eye");
    let request = last_answer_request(&eye);
    let part = &request.body["messages"].as_array().unwrap().last().unwrap()["content"][1];
    let url = part["image_url"]["url"].as_str().unwrap();
    let sent = base64::engine::general_purpose::STANDARD
        .decode(url.strip_prefix("data:image/png;base64,").expect("re-encoded as PNG"))
        .unwrap();
    assert_eq!(png_size(&sent), (4, 4));

    // Deleting a conversation deletes its images, files included; the copy stays.
    let r = c.delete(&format!("/api/v1/conversations/{conversation}")).await;
    assert_eq!(r.status, 204);
    for id in [&first, &second] {
        assert_eq!(image_bytes(&c, id).await.0, 404);
        assert!(!server.dir.path().join(format!("data/images/{id}.png")).exists());
    }
    assert_eq!(image_bytes(&c, &copy).await.0, 200);
}

#[tokio::test]
async fn a_local_vision_language_model_answers_image_questions() {
    // A tiny random-weight Qwen3-VL, run in the engine, beside the tiny text model.
    let model_dir = tempfile::tempdir().unwrap();
    enclave::engine::tiny::write_tiny_qwen3_vl(model_dir.path(), 3, &enclave::engine::tiny::TinyVisionShape::default())
        .unwrap();
    let server = TestServer::start_with(Options {
        extra_models: format!(
            "\n[[models]]\nid = \"tiny-vl\"\nrole = \"chat\"\nprovider = \"local\"\npath = \"{}\"\ncapabilities = [\"vision\"]\n",
            model_dir.path().display()
        ),
        ..Options::default()
    });
    let mut c = Client::new(&server);
    c.signup("fay").await;
    let seeing = crate::common::eventually(|| async {
        let models = c.get("/api/v1/models").await;
        let vl = models.body["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "tiny-vl")
            .cloned()
            .unwrap();
        (vl["status"] == "ready").then_some(vl)
    })
    .await;
    assert_eq!(seeing["capabilities"], json!(["vision"]));
    assert_eq!(seeing["default_vision"], true, "the first model that can see");

    // The conversation's text model cannot see: the local vision model answers.
    let image = upload_one(&c, &encoded(&picture(40, 24), ImageFormat::Png)).await;
    let conversation = c
        .new_conversation(json!({"model": LOCAL_MODEL, "settings": {"max_tokens": 6}}))
        .await;
    let mut stream = c
        .stream(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"content": "What is this?", "attachments": [{"type": "image", "image_id": image}]}),
        )
        .await;
    assert_eq!(stream.status, 200, "{:?}", stream.error_body);
    let events = stream.collect().await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "done", "{events:?}");
    // 40 × 24 pixels are 5 × 3 image tokens for this model, framed by two more.
    let prompt_tokens = last.data["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens > 17, "{prompt_tokens}");
    assert_eq!(last.data["usage"]["completion_tokens"], 6);
    let detail = c.get(&format!("/api/v1/conversations/{conversation}")).await;
    assert_eq!(
        detail.body["messages"][1]["model"], "tiny-vl",
        "the answer records who answered"
    );
    assert_eq!(detail.body["model"], LOCAL_MODEL);

    // /v1 with a data: URL, to the vision model by name; the same image twice costs twice.
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(encoded(&picture(40, 24), ImageFormat::Png))
    );
    let ask = |images: usize| {
        let mut content = vec![json!({"type": "text", "text": "Describe."})];
        content.extend((0..images).map(|_| json!({"type": "image_url", "image_url": {"url": url}})));
        json!({"model": "tiny-vl", "max_tokens": 3, "messages": [{"role": "user", "content": content}]})
    };
    let one = c.post("/v1/chat/completions", ask(1)).await;
    assert_eq!(one.status, 200, "{:?}", one.body);
    let two = c.post("/v1/chat/completions", ask(2)).await;
    assert_eq!(two.status, 200, "{:?}", two.body);
    let tokens = |r: &crate::common::Reply| r.body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        tokens(&two) - tokens(&one),
        15 + 2,
        "one more image: its tokens and its frame"
    );
    assert!(one.body["choices"][0]["message"]["content"].as_str().is_some());
}
