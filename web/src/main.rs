//! Enclave's web UI: a Leptos client-side app, compiled to WebAssembly and embedded in the
//! server binary. It talks only to the server's own API (`/api/v1`).

mod api;
mod app;
mod components;
#[cfg(test)]
mod contrast;
mod errors;
mod highlight;
mod icons;
mod interop;
mod markdown;
mod pages;
mod state;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
    interop::mark("enclave-mounted");
}
