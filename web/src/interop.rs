//! The browser beyond web-sys: the vendored highlight.js and KaTeX (loaded by index.html),
//! the clipboard, local storage and the colour scheme.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::Element;

#[wasm_bindgen]
extern "C" {
    /// `hljs.highlightElement(el)`; an error when highlight.js is not loaded.
    #[wasm_bindgen(js_namespace = hljs, js_name = highlightElement, catch)]
    fn hljs_highlight_element(element: &Element) -> Result<(), JsValue>;

    /// `katex.render(tex, el, options)`; an error when KaTeX is not loaded.
    #[wasm_bindgen(js_namespace = katex, js_name = render, catch)]
    fn katex_render(tex: &str, element: &Element, options: &JsValue) -> Result<(), JsValue>;
}

/// Highlights the code blocks and typesets the math under `root` that are not done yet.
pub fn enhance(root: &Element) {
    if let Ok(blocks) = root.query_selector_all("pre code[class^=\"language-\"]:not(.hljs)") {
        for i in 0..blocks.length() {
            if let Some(element) = blocks.item(i).and_then(|n| n.dyn_into::<Element>().ok()) {
                let _ = hljs_highlight_element(&element);
            }
        }
    }
    if let Ok(math) = root.query_selector_all(".math[data-tex]:not(.typeset)") {
        for i in 0..math.length() {
            let Some(element) = math.item(i).and_then(|n| n.dyn_into::<Element>().ok()) else {
                continue;
            };
            let tex = element.get_attribute("data-tex").unwrap_or_default();
            let options = js_sys::Object::new();
            let display = element.class_list().contains("display");
            let _ = js_sys::Reflect::set(&options, &"displayMode".into(), &display.into());
            let _ = js_sys::Reflect::set(&options, &"throwOnError".into(), &false.into());
            // The model's TeX is untrusted: no \href, \url or HTML extensions.
            let _ = js_sys::Reflect::set(&options, &"trust".into(), &false.into());
            if katex_render(&tex, &element, &options).is_ok() {
                let _ = element.class_list().add_1("typeset");
            }
        }
    }
}

/// Moves the keyboard focus to the element `selector` names, if it is on the page.
pub fn focus(selector: &str) {
    if let Some(element) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.query_selector(selector).ok().flatten())
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = element.focus();
    }
}

/// Saves `blob` as a file named `filename` (the browser's download).
pub fn save_file(blob: &web_sys::Blob, filename: &str) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(blob) else {
        return;
    };
    if let Some(anchor) = document
        .create_element("a")
        .ok()
        .and_then(|a| a.dyn_into::<web_sys::HtmlAnchorElement>().ok())
    {
        anchor.set_href(&url);
        anchor.set_download(filename);
        anchor.click();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

/// Copies `text` to the clipboard.
pub fn copy(text: &str) {
    if let Some(window) = web_sys::window() {
        let _ = window.navigator().clipboard().write_text(text);
    }
}

/// The value stored under `key` in local storage.
pub fn stored(key: &str) -> Option<String> {
    web_sys::window()?.local_storage().ok()??.get_item(key).ok()?
}

/// Stores `value` under `key` in local storage.
pub fn store(key: &str, value: &str) {
    if let Some(Ok(Some(storage))) = web_sys::window().map(|w| w.local_storage()) {
        let _ = storage.set_item(key, value);
    }
}

/// Removes `key` from local storage.
pub fn forget(key: &str) {
    if let Some(Ok(Some(storage))) = web_sys::window().map(|w| w.local_storage()) {
        let _ = storage.remove_item(key);
    }
}

/// Whether the system prefers a dark colour scheme.
pub fn system_prefers_dark() -> bool {
    web_sys::window()
        .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
        .is_some_and(|m| m.matches())
}

/// Applies `theme` (`dark`, `light` or `system`) to the page.
pub fn apply_theme(theme: &str) {
    let dark = match theme {
        "dark" => true,
        "light" => false,
        _ => system_prefers_dark(),
    };
    if let Some(root) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
    {
        let _ = root.set_attribute("data-theme", if dark { "dark" } else { "light" });
    }
}

/// Milliseconds since the epoch of an RFC 3339 time (the server's `...Z` format).
pub fn parse_time(rfc3339: &str) -> f64 {
    js_sys::Date::parse(rfc3339)
}

/// An RFC 3339 time as the browser writes a local date and time ("30/11/2026, 12:04:05").
pub fn local_time(rfc3339: &str) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(parse_time(rfc3339)));
    date.to_locale_string("default", &JsValue::UNDEFINED).into()
}

/// Midnight today, local time, in milliseconds since the epoch.
pub fn start_of_today() -> f64 {
    let date = js_sys::Date::new_0();
    date.set_hours(0);
    date.set_minutes(0);
    date.set_seconds(0);
    date.set_milliseconds(0);
    date.get_time()
}

/// Adds a `performance.mark` (read by the UI benchmark: time to interactive, first token).
pub fn mark(name: &str) {
    if let Some(performance) = web_sys::window().and_then(|w| w.performance()) {
        let _ = performance.mark(name);
    }
}
