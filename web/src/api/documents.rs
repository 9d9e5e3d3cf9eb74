//! Documents from the browser: uploads, one request per file so that each file has its own
//! progress and its own error (sent with XMLHttpRequest: fetch cannot report upload progress),
//! and the original of a document as a blob URL (fetched with the access token: the page never
//! links to the API with a token in the address).

use std::cell::Cell;
use std::rc::Rc;

use enclave_protocol::{UploadResponse, UploadedPart, Uuid};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{File, FormData, ProgressEvent, XmlHttpRequest};

use super::{access_token, authorized, retry_after_refresh, ApiError};

/// Where the upload of one file stands, for its progress bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UploadProgress {
    /// This fraction of the bytes has been sent.
    Sending(f64),
    /// Every byte is sent; the server is storing the file.
    Stored,
}

const UPLOAD_PATH: &str = "/api/v1/documents/upload";

/// Uploads `file`; `on_progress` follows the bytes as they go. Returns the server's answer for
/// the file: the document (queued, or the existing one for the same bytes) or why it was
/// refused.
pub async fn upload_file(
    file: &File,
    on_progress: impl Fn(UploadProgress) + 'static,
) -> Result<UploadedPart, ApiError> {
    let on_progress: Rc<dyn Fn(UploadProgress)> = Rc::new(on_progress);
    let mut refreshed = false;
    loop {
        let (status, body) = send_once(file, on_progress.clone()).await?;
        if (200..300).contains(&status) {
            let mut answer: UploadResponse =
                serde_json::from_str(&body).map_err(|e| ApiError::bad_response(status, e))?;
            on_progress(UploadProgress::Stored);
            return answer
                .documents
                .pop()
                .ok_or_else(|| ApiError::bad_response(status, "no document in the answer"));
        }
        let error = ApiError::from_body(status, &body);
        if !retry_after_refresh(&error, UPLOAD_PATH, &mut refreshed).await {
            return Err(error);
        }
    }
}

/// One try of an upload: the status and body of the answer.
async fn send_once(file: &File, on_progress: Rc<dyn Fn(UploadProgress)>) -> Result<(u16, String), ApiError> {
    let network = |_| ApiError::network();
    let form = FormData::new().map_err(network)?;
    form.append_with_blob_and_filename("file", file, &file.name())
        .map_err(network)?;
    let xhr = XmlHttpRequest::new().map_err(network)?;
    xhr.open_with_async("POST", UPLOAD_PATH, true).map_err(network)?;
    xhr.set_request_header("Accept", "application/json").map_err(network)?;
    if let Some(token) = access_token() {
        xhr.set_request_header("Authorization", &format!("Bearer {token}"))
            .map_err(network)?;
    }
    // The last fraction reported: progress events come often, the bar needs a few.
    let last = Cell::new(-1.0_f64);
    let progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |event: ProgressEvent| {
        if event.length_computable() && event.total() > 0.0 {
            let fraction = event.loaded() / event.total();
            if fraction - last.get() >= 0.01 || fraction >= 1.0 {
                last.set(fraction);
                on_progress(UploadProgress::Sending(fraction));
            }
        }
    });
    xhr.upload()
        .map_err(network)?
        .set_onprogress(Some(progress.as_ref().unchecked_ref()));
    let finished = js_sys::Promise::new(&mut |resolve, reject| {
        xhr.set_onload(Some(&resolve));
        xhr.set_onerror(Some(&reject));
        xhr.set_onabort(Some(&reject));
        xhr.set_ontimeout(Some(&reject));
    });
    xhr.send_with_opt_form_data(Some(&form)).map_err(network)?;
    let outcome = JsFuture::from(finished).await;
    // Kept alive until the request ended: the browser calls it until then.
    drop(progress);
    outcome.map_err(network)?;
    let status = xhr.status().map_err(network)?;
    let body = xhr.response_text().map_err(network)?.unwrap_or_default();
    Ok((status, body))
}

/// The original of document `id` as a blob URL (the caller revokes it with
/// `web_sys::Url::revoke_object_url` when done).
pub async fn original_url(id: Uuid) -> Result<String, ApiError> {
    let response = authorized("GET", &format!("/api/v1/documents/{id}/file"), None).await?;
    let promise = response.blob().map_err(|_| ApiError::network())?;
    let blob: web_sys::Blob = JsFuture::from(promise)
        .await
        .map_err(|_| ApiError::network())?
        .unchecked_into();
    web_sys::Url::create_object_url_with_blob(&blob).map_err(|_| ApiError::network())
}
