//! Adding files: a drop zone and a picker for several files at once, and the uploads in flight,
//! each with its own progress bar and its own error (a refused file does not stop the others).
//! Files go a few at a time, in the order given; once the server has a file it shows in the
//! list below with its ingestion progress.

use std::collections::VecDeque;

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use web_sys::File;

use crate::api::{self, UploadProgress, UploadedPart};
use crate::icons::{Icon, Svg};

/// Files sent at the same time.
const PARALLEL: usize = 3;

/// Where one upload stands.
#[derive(Clone, Debug, PartialEq)]
pub enum UploadState {
    /// Waiting for a free slot.
    Waiting,
    /// This fraction of the bytes has been sent.
    Sending(f64),
    /// Refused by the server, or failed on the way: why.
    Failed(String),
}

/// One file being added.
#[derive(Clone, Debug, PartialEq)]
pub struct Upload {
    /// Its place in this page's uploads.
    pub key: u32,
    /// The file's name.
    pub filename: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where it stands.
    pub state: UploadState,
}

/// The uploads of the page: the rows shown, the files not yet sent, and `on_stored`, called
/// each time the server has taken a file (the list then reloads).
#[derive(Clone, Copy)]
pub struct Uploads {
    /// The rows shown: waiting, sending and failed uploads.
    pub rows: RwSignal<Vec<Upload>>,
    queue: StoredValue<VecDeque<(u32, File)>, LocalStorage>,
    running: StoredValue<usize>,
    next_key: StoredValue<u32>,
    on_stored: Callback<()>,
}

impl Uploads {
    /// No uploads yet.
    pub fn new(on_stored: Callback<()>) -> Self {
        Self {
            rows: RwSignal::new(Vec::new()),
            queue: StoredValue::new_local(VecDeque::new()),
            running: StoredValue::new(0),
            next_key: StoredValue::new(0),
            on_stored,
        }
    }

    /// Whether files are waiting or being sent.
    pub fn busy(self) -> bool {
        self.running.get_value() > 0 || self.queue.with_value(|q| !q.is_empty())
    }

    /// Adds the files of `list` (a picker's choice or a drop).
    pub fn add(self, list: web_sys::FileList) {
        for at in 0..list.length() {
            let Some(file) = list.get(at) else { continue };
            let key = self.next_key.get_value();
            self.next_key.set_value(key + 1);
            self.rows.update(|rows| {
                rows.push(Upload {
                    key,
                    filename: file.name(),
                    size: file.size() as u64,
                    state: UploadState::Waiting,
                })
            });
            self.queue.update_value(|q| q.push_back((key, file)));
        }
        self.pump();
    }

    /// Starts waiting uploads while slots are free.
    fn pump(self) {
        while self.running.get_value() < PARALLEL {
            let Some((key, file)) = self.queue.try_update_value(|q| q.pop_front()).flatten() else {
                return;
            };
            self.running.update_value(|n| *n += 1);
            spawn_local(async move {
                self.set(key, UploadState::Sending(0.0));
                let progress = move |p: UploadProgress| {
                    if let UploadProgress::Sending(fraction) = p {
                        self.set(key, UploadState::Sending(fraction));
                    }
                };
                match api::upload_file(&file, progress).await {
                    Ok(UploadedPart::Accepted { .. }) => {
                        self.rows.update(|rows| rows.retain(|r| r.key != key));
                        self.on_stored.run(());
                    }
                    Ok(UploadedPart::Refused { error, .. }) => self.set(key, UploadState::Failed(error)),
                    Err(e) => self.set(key, UploadState::Failed(e.message)),
                }
                self.running.update_value(|n| *n -= 1);
                self.pump();
            });
        }
    }

    fn set(self, key: u32, state: UploadState) {
        self.rows.update(|rows| {
            if let Some(row) = rows.iter_mut().find(|r| r.key == key) {
                row.state = state;
            }
        });
    }

    /// Removes a failed upload's row.
    fn dismiss(self, key: u32) {
        self.rows.update(|rows| rows.retain(|r| r.key != key));
    }
}

/// A size for people: 532 B, 14.2 KB, 3.1 MB.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        0..1000 => format!("{bytes} B"),
        1000..1_000_000 => format!("{:.1} KB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.1} GB", bytes as f64 / 1e9),
    }
}

/// The drop zone with its picker, and the uploads in flight.
#[component]
pub fn DropZone(uploads: Uploads) -> impl IntoView {
    let over = RwSignal::new(false);
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        over.set(false);
        if let Some(files) = ev.data_transfer().and_then(|d| d.files()) {
            uploads.add(files);
        }
    };
    let on_pick = move |ev: leptos::ev::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else {
            return;
        };
        if let Some(files) = input.files() {
            uploads.add(files);
        }
        // The same file can be picked again (after a failure).
        input.set_value("");
    };
    view! {
        <div class="dropzone" class:over=move || over.get()
            on:dragover=move |ev: leptos::ev::DragEvent| { ev.prevent_default(); over.set(true); }
            on:dragleave=move |_| over.set(false)
            on:drop=on_drop>
            <p>"Drop files here, or "
                <label class="link" for="file-picker">"choose files"</label>
                <input id="file-picker" class="visually-hidden" type="file" multiple on:change=on_pick/>
            </p>
            <p class="hint">"PDF (scans included), Word, OpenDocument, PowerPoint, Excel, CSV, HTML, Markdown, text, RTF, e-mail, ZIP, photos and scans (PNG, JPEG, WebP, GIF, TIFF)"</p>
        </div>
        <Show when=move || !uploads.rows.with(Vec::is_empty)>
            <ul class="uploads" aria-label="Uploads">
                <For each=move || uploads.rows.get() key=|u| (u.key, format!("{:?}", u.state)) let:upload>
                    <UploadRow upload=upload uploads=uploads/>
                </For>
            </ul>
        </Show>
    }
}

/// One upload: name, size, its progress or its error.
#[component]
fn UploadRow(upload: Upload, uploads: Uploads) -> impl IntoView {
    let key = upload.key;
    let (status, fraction, error) = match &upload.state {
        UploadState::Waiting => ("waiting".to_owned(), Some(0.0), None),
        UploadState::Sending(f) => (format!("uploading {:.0}%", f * 100.0), Some(*f), None),
        UploadState::Failed(e) => ("refused".to_owned(), None, Some(e.clone())),
    };
    let failed = error.is_some();
    view! {
        <li class="upload" class:failed=failed>
            <span class="name">{upload.filename.clone()}</span>
            <span class="meta">{human_size(upload.size)}</span>
            <span class="status">{status}</span>
            {fraction.map(|f| view! { <progress max="1" value=f.to_string() aria-label=format!("Upload of {}", upload.filename)></progress> })}
            {error.map(|e| view! {
                <p class="form-error" role="alert">{e}</p>
                <button type="button" class="icon" aria-label="Dismiss" on:click=move |_| uploads.dismiss(key)><Svg icon=Icon::Close/></button>
            })}
        </li>
    }
}
