//! Images attached to the message being written: added by the picker, pasted from the
//! clipboard or dropped on the message box; each uploads at once (so sending is quick) and
//! shows as a thumbnail with its state and a remove button. A refused image shows the server's
//! reason and is never sent.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, ImageUploadPart, Uuid};
use crate::icons::{Icon, Svg};

/// Where one attached image stands.
#[derive(Clone, Debug, PartialEq)]
pub enum AttachmentState {
    /// Being uploaded.
    Uploading,
    /// Stored under this id: it goes with the message.
    Ready(Uuid),
    /// Refused (the reason); never sent.
    Failed(String),
}

/// One attached image.
#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    /// Stable key of the row.
    pub key: u32,
    /// The file's name, for its label.
    pub name: String,
    /// A blob URL of the local file, for the thumbnail.
    pub preview: String,
    /// Where it stands.
    pub state: AttachmentState,
}

/// The images of the message being written; cheap to copy into closures.
#[derive(Clone, Copy)]
pub struct Attachments {
    /// In the order added.
    pub list: RwSignal<Vec<Attachment>>,
    next_key: StoredValue<u32>,
}

impl Default for Attachments {
    fn default() -> Self {
        Self::new()
    }
}

impl Attachments {
    /// No images yet.
    pub fn new() -> Self {
        Self {
            list: RwSignal::new(Vec::new()),
            next_key: StoredValue::new(0),
        }
    }

    fn key(self) -> u32 {
        let key = self.next_key.get_value();
        self.next_key.set_value(key + 1);
        key
    }

    /// Adds the image files of `list` (other files, such as a pasted document, are left out) and
    /// starts their uploads; true when it took any.
    pub fn add_files(self, list: &web_sys::FileList) -> bool {
        let mut took = false;
        for at in 0..list.length() {
            let Some(file) = list.get(at) else { continue };
            // The server decides from the bytes; the type only keeps other files out of here.
            if !file.type_().starts_with("image/") {
                continue;
            }
            took = true;
            let key = self.key();
            let preview = web_sys::Url::create_object_url_with_blob(&file).unwrap_or_default();
            self.list.update(|list| {
                list.push(Attachment {
                    key,
                    name: file.name(),
                    preview: preview.clone(),
                    state: AttachmentState::Uploading,
                })
            });
            spawn_local(async move {
                let state = match api::upload_image(&file).await {
                    Ok(ImageUploadPart::Accepted { image }) => {
                        api::remember_image_url(image.id, preview);
                        AttachmentState::Ready(image.id)
                    }
                    Ok(ImageUploadPart::Refused { error, .. }) => AttachmentState::Failed(error),
                    Err(error) => AttachmentState::Failed(error.message),
                };
                let mut orphan = None;
                self.list.update(|list| match list.iter_mut().find(|a| a.key == key) {
                    Some(row) => row.state = state,
                    // Removed while uploading: the stored copy is not wanted.
                    None => orphan = Some(state),
                });
                if let Some(AttachmentState::Ready(id)) = orphan {
                    api::discard_image(id).await;
                }
            });
        }
        took
    }

    /// Removes an image (and its stored copy, which will not be sent).
    pub fn remove(self, key: u32) {
        let mut removed = None;
        self.list.update(|list| {
            if let Some(at) = list.iter().position(|a| a.key == key) {
                removed = Some(list.remove(at));
            }
        });
        match removed.map(|a| (a.state, a.preview)) {
            Some((AttachmentState::Ready(id), _)) => spawn_local(async move { api::discard_image(id).await }),
            Some((_, preview)) => {
                let _ = web_sys::Url::revoke_object_url(&preview);
            }
            None => {}
        }
    }

    /// Whether an image is still being uploaded (sending waits for it).
    pub fn uploading(self) -> Signal<bool> {
        Signal::derive(move || {
            self.list
                .with(|list| list.iter().any(|a| a.state == AttachmentState::Uploading))
        })
    }

    /// Whether an image is ready to go.
    pub fn any_ready(self) -> Signal<bool> {
        Signal::derive(move || {
            self.list
                .with(|list| list.iter().any(|a| matches!(a.state, AttachmentState::Ready(_))))
        })
    }

    /// Takes the ready images for a message being sent (the refused ones go too).
    pub fn take(self) -> Vec<Uuid> {
        let list = self.list.get_untracked();
        self.list.set(Vec::new());
        list.into_iter()
            .filter_map(|a| match a.state {
                AttachmentState::Ready(id) => Some(id),
                _ => {
                    let _ = web_sys::Url::revoke_object_url(&a.preview);
                    None
                }
            })
            .collect()
    }

    /// Puts back the images of a message that could not be sent.
    pub fn restore(self, ids: &[Uuid]) {
        for &id in ids {
            let key = self.key();
            spawn_local(async move {
                let preview = api::image_url(id).await.unwrap_or_default();
                self.list.update(|list| {
                    list.push(Attachment {
                        key,
                        name: "image".into(),
                        preview,
                        state: AttachmentState::Ready(id),
                    })
                });
            });
        }
    }
}

/// The thumbnails of the attached images, each with its state and a remove button.
#[component]
pub fn AttachmentStrip(attachments: Attachments) -> impl IntoView {
    view! {
        <Show when=move || !attachments.list.with(Vec::is_empty)>
            <ul class="attachments" aria-label="Attached images">
                <For each=move || attachments.list.get() key=|a| (a.key, format!("{:?}", a.state)) let:attachment>
                    {
                        let key = attachment.key;
                        let (state, error) = match &attachment.state {
                            AttachmentState::Uploading => ("uploading", None),
                            AttachmentState::Ready(_) => ("ready", None),
                            AttachmentState::Failed(e) => ("failed", Some(e.clone())),
                        };
                        let title = error.clone().unwrap_or_else(|| attachment.name.clone());
                        view! {
                            <li class="attachment" data-state=state title=title>
                                <img src=attachment.preview.clone() alt=attachment.name.clone()/>
                                {(state == "uploading").then(|| view! { <span class="spinner small" role="status" aria-label="Uploading"></span> })}
                                {error.map(|e| view! { <span class="attachment-error" role="alert">{e}</span> })}
                                <button type="button" class="icon remove" aria-label=format!("Remove {}", attachment.name)
                                    on:click=move |_| attachments.remove(key)><Svg icon=Icon::Close/></button>
                            </li>
                        }
                    }
                </For>
            </ul>
        </Show>
    }
}
