//! The input panel: pick an image by drag-and-drop, file picker or paste (the paste listener is page-wide, in
//! `app/mod.rs`), and see it next to the background-removed input the server prepared from it. While a gallery
//! entry is being tweaked, the panel shows that entry's images instead.

use leptos::prelude::*;
use web_sys::{DragEvent, HtmlInputElement};

use crate::app::Studio;

/// Image formats the server decodes, recognised by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// PNG (`\x89PNG\r\n\x1a\n`).
    Png,
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// WebP (`RIFF....WEBP`).
    Webp,
}

/// Recognises a PNG, JPEG or WebP file from its first 12 bytes (`None` for anything else, whatever its name).
pub fn sniff_image(head: &[u8]) -> Option<ImageKind> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageKind::Png)
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageKind::Jpeg)
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some(ImageKind::Webp)
    } else {
        None
    }
}

fn human_bytes(n: f64) -> String {
    if n < 1024.0 * 1024.0 { format!("{:.0} KB", n / 1024.0) } else { format!("{:.1} MB", n / 1_048_576.0) }
}

/// The image drop zone, the chosen image and the prepared (background-removed) input side by side.
#[component]
pub fn UploadPanel() -> impl IntoView {
    let studio = Studio::get();
    let dragging = RwSignal::new(false);

    let on_drop = move |ev: DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        if let Some(file) = ev.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)) {
            studio.choose_file(file);
        }
    };
    let on_change = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        if let Some(file) = input.files().and_then(|f| f.get(0)) {
            studio.choose_file(file);
        }
        // Picking the same file again must fire `change` again.
        input.set_value("");
    };

    // The left image: the tweaked entry's input, else the picked file.
    let source = move || {
        if let Some(t) = studio.tweak.get() {
            let name = t.metadata.source_name.clone().unwrap_or_else(|| t.id.clone());
            return Some((crate::api::authed_url(&t.urls.input), format!("{name} (from the gallery)")));
        }
        studio.upload.with(|u| u.as_ref().map(|u| (u.url.clone(), format!("{} · {}", u.name, human_bytes(u.size)))))
    };

    view! {
        <section class="card upload" aria-labelledby="upload-title">
            <h2 id="upload-title">"1 · Image"</h2>
            <label
                class="dropzone"
                class:dragging=move || dragging.get()
                data-testid="dropzone"
                on:dragover=move |ev: DragEvent| {
                    ev.prevent_default();
                    dragging.set(true);
                }
                on:dragleave=move |_| dragging.set(false)
                on:drop=on_drop
            >
                <input
                    type="file"
                    class="visually-hidden"
                    accept="image/png,image/jpeg,image/webp"
                    data-testid="file-input"
                    on:change=on_change
                />
                <span class="dropzone-text">
                    "Drop an image here, paste it (Ctrl+V), or "
                    <span class="link-like">"choose a file"</span>
                </span>
                <span class="dropzone-sub">"PNG, JPEG or WebP; a transparent background is kept."</span>
            </label>
            {move || {
                studio
                    .upload_error
                    .get()
                    .map(|p| {
                        view! {
                            <div class="error" role="alert" data-testid="upload-error">
                                <p>
                                    <strong>{p.message}</strong>
                                </p>
                                <p class="hint">{p.hint}</p>
                            </div>
                        }
                    })
            }}
            {move || {
                studio
                    .tweak
                    .get()
                    .map(|t| {
                        view! {
                            <div class="tweak-banner" data-testid="tweak-banner">
                                <p>
                                    "Tweaking " <code>{t.id.clone()}</code>
                                    ": starting regenerates it with the parameters below (the network is skipped while foreground ratio and background stay the same)."
                                </p>
                                <button
                                    type="button"
                                    class="ghost"
                                    data-testid="tweak-clear"
                                    on:click=move |_| studio.tweak.set(None)
                                >
                                    "Use a new image instead"
                                </button>
                            </div>
                        }
                    })
            }}
            <div class="previews">
                <figure class="preview">
                    {move || match source() {
                        Some((url, caption)) => {
                            view! {
                                <img src=url alt="The chosen image" data-testid="input-preview" />
                                <figcaption>{caption}</figcaption>
                            }
                                .into_any()
                        }
                        None => {
                            view! {
                                <div class="placeholder">"No image yet"</div>
                                <figcaption>"Your image"</figcaption>
                            }
                                .into_any()
                        }
                    }}
                </figure>
                <figure class="preview">
                    {move || match studio.prepared.get() {
                        Some(url) => {
                            view! {
                                <img
                                    src=crate::api::authed_url(&url)
                                    alt="The input after background removal and cropping"
                                    data-testid="preprocessed-preview"
                                />
                                <figcaption>"Prepared input (background removed)"</figcaption>
                            }
                                .into_any()
                        }
                        None => {
                            view! {
                                <div class="placeholder">"Appears once the server has prepared the image"</div>
                                <figcaption>"Prepared input"</figcaption>
                            }
                                .into_any()
                        }
                    }}
                </figure>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_three_formats_by_content() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some(ImageKind::Png));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]), Some(ImageKind::Jpeg));
        assert_eq!(sniff_image(b"RIFF\x24\0\0\0WEBPVP8 "), Some(ImageKind::Webp));
    }

    #[test]
    fn refuses_text_renamed_to_png() {
        assert_eq!(sniff_image(b"hello, this is not a picture"), None);
        assert_eq!(sniff_image(b"RIFF\x24\0\0\0WAVEfmt "), None, "a RIFF that is not WebP");
        assert_eq!(sniff_image(b""), None);
        assert_eq!(sniff_image(b"\x89PN"), None, "truncated signature");
    }
}
