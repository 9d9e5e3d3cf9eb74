//! Images from the browser: each picked, pasted or dropped image uploaded on its own (a fetch
//! with a FormData body: the browser writes the multipart boundary), and a stored image as a
//! blob URL fetched with the access token (the page never puts a token in an address; the CSP
//! allows `blob:` images), remembered per id while the page lives.

use std::cell::RefCell;
use std::collections::HashMap;

use enclave_protocol::{ImageUploadPart, ImageUploadResponse, Uuid};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{File, FormData, Headers, Request, RequestCredentials, RequestInit};

use super::{access_token, authorized, fetch, retry_after_refresh, text, ApiError};

const UPLOAD_PATH: &str = "/api/v1/images";

thread_local! {
    /// Blob URLs of images already shown, by id (an uploaded one starts with its local file).
    static URLS: RefCell<HashMap<Uuid, String>> = RefCell::new(HashMap::new());
}

/// Uploads `file`; the server's answer for it: the stored image or why it was refused.
pub async fn upload_image(file: &File) -> Result<ImageUploadPart, ApiError> {
    let mut refreshed = false;
    loop {
        let network = |_| ApiError::network();
        let form = FormData::new().map_err(network)?;
        form.append_with_blob_and_filename("file", file, &file.name())
            .map_err(network)?;
        let init = RequestInit::new();
        init.set_method("POST");
        init.set_credentials(RequestCredentials::SameOrigin);
        let headers = Headers::new().map_err(network)?;
        let _ = headers.set("Accept", "application/json");
        if let Some(token) = access_token() {
            let _ = headers.set("Authorization", &format!("Bearer {token}"));
        }
        init.set_headers(&headers);
        init.set_body(&form);
        let request = Request::new_with_str_and_init(UPLOAD_PATH, &init).map_err(network)?;
        let response = fetch(&request).await?;
        let status = response.status();
        let body = text(&response).await?;
        if (200..300).contains(&status) {
            let mut answer: ImageUploadResponse =
                serde_json::from_str(&body).map_err(|e| ApiError::bad_response(status, e))?;
            return answer
                .images
                .pop()
                .ok_or_else(|| ApiError::bad_response(status, "no image in the answer"));
        }
        let error = ApiError::from_body(status, &body);
        if !retry_after_refresh(&error, UPLOAD_PATH, &mut refreshed).await {
            return Err(error);
        }
    }
}

/// Remembers `url` (a local file's blob URL) as the picture of image `id`: sent images show
/// at once, without fetching them back.
pub fn remember_image_url(id: Uuid, url: String) {
    URLS.with(|urls| urls.borrow_mut().insert(id, url));
}

/// The blob URL of the picture of image `id` (fetched once with the access token).
pub async fn image_url(id: Uuid) -> Result<String, ApiError> {
    if let Some(url) = URLS.with(|urls| urls.borrow().get(&id).cloned()) {
        return Ok(url);
    }
    let response = authorized("GET", &format!("/api/v1/images/{id}"), None).await?;
    let promise = response.blob().map_err(|_| ApiError::network())?;
    let blob: web_sys::Blob = JsFuture::from(promise)
        .await
        .map_err(|_| ApiError::network())?
        .unchecked_into();
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|_| ApiError::network())?;
    remember_image_url(id, url.clone());
    Ok(url)
}

/// Deletes an uploaded image that will not be sent (best effort: the server sweeps unsent
/// images after a day anyway).
pub async fn discard_image(id: Uuid) {
    let _ = super::request_empty("DELETE", &format!("/api/v1/images/{id}"), None).await;
    if let Some(url) = URLS.with(|urls| urls.borrow_mut().remove(&id)) {
        let _ = web_sys::Url::revoke_object_url(&url);
    }
}
