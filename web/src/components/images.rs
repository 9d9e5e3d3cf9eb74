//! Images of the conversation: a message's attached images as thumbnails (each fetched with
//! the access token into a blob URL), and the viewer that shows one enlarged.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Uuid};
use crate::icons::{Icon, Svg};

/// The images `ids` of a message; clicking one opens it in the viewer.
#[component]
pub fn MessageImages(ids: Vec<Uuid>, open: Callback<String>) -> impl IntoView {
    view! {
        <div class="message-images">
            {ids.into_iter().map(|id| view! { <Thumbnail id=id open=open/> }).collect_view()}
        </div>
    }
}

/// One attached image.
#[component]
fn Thumbnail(id: Uuid, open: Callback<String>) -> impl IntoView {
    let url = RwSignal::new(None::<Result<String, String>>);
    spawn_local(async move {
        url.set(Some(api::image_url(id).await.map_err(|e| e.message)));
    });
    view! {
        {move || match url.get() {
            None => view! { <span class="thumb loading" role="status" aria-label="Loading the image"></span> }.into_any(),
            Some(Ok(src)) => {
                let full = src.clone();
                view! {
                    <button type="button" class="thumb" aria-label="Enlarge the image" on:click=move |_| open.run(full.clone())>
                        <img src=src alt="Attached image"/>
                    </button>
                }.into_any()
            }
            Some(Err(error)) => view! { <span class="thumb missing" title=error>"Image unavailable"</span> }.into_any(),
        }}
    }
}

/// An image shown large over the page; Esc, the button or a click outside closes it.
#[component]
pub fn ImageViewer(url: String, on_close: Callback<()>) -> impl IntoView {
    view! {
        <div class="lightbox" role="dialog" aria-modal="true" aria-label="Image" on:click=move |_| on_close.run(())>
            <img src=url alt="Attached image, enlarged" on:click=|ev| ev.stop_propagation()/>
            <button type="button" class="icon close" aria-label="Close the image" on:click=move |_| on_close.run(())><Svg icon=Icon::Close/></button>
        </div>
    }
}
