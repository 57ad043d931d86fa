//! The gallery: past meshes from `GET /api/meshes` (newest first, paginated with `next_cursor`), each with its
//! prepared input as thumbnail, date, key parameters and timings, and actions: open in the viewer, tweak
//! (reload its parameters and regenerate from it), compare (two picks, or with its parent) and delete.
//! Everything shown is server data, so it survives a reload.

use leptos::prelude::*;
use sf3d_shared::{GenerateParams, MeshEntry};

use crate::app::Studio;
use crate::job::format_ms;

/// `2026-11-27T10:31:07Z` → `2026-11-27 10:31 UTC` (anything unexpected is shown as is).
pub fn format_date(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(day), Some(time)) if rfc3339.as_bytes().get(10) == Some(&b'T') => {
            format!("{day} {time} UTC")
        }
        _ => rfc3339.to_owned(),
    }
}

/// The parameters in one line: `1024 px · remesh triangle · 5000 vertices · fg 0.85 · bg auto`.
pub fn params_summary(p: &GenerateParams) -> String {
    let vertices = match p.target_vertex_count() {
        Some(n) => format!("{n} vertices"),
        None => "all vertices".to_owned(),
    };
    format!(
        "{} px · remesh {} · {vertices} · fg {:.2} · bg {}",
        p.texture_resolution, p.remesh, p.foreground_ratio, p.background
    )
}

/// Short form of a ULID for links (`01JDQ3ZK…`).
fn short_id(id: &str) -> String {
    match id.get(..10) {
        Some(head) if id.len() > 12 => format!("{head}…"),
        _ => id.to_owned(),
    }
}

/// One gallery entry with its actions.
#[component]
fn MeshCard(
    /// The entry.
    entry: MeshEntry,
) -> impl IntoView {
    let studio = Studio::get();
    let confirming = RwSignal::new(false);
    let m = entry.metadata.clone();
    let id = entry.id.clone();
    let name = m.source_name.clone().unwrap_or_else(|| short_id(&entry.id));
    let picked = {
        let id = id.clone();
        move || studio.compare_pick.with(|p| p.as_ref().is_some_and(|p| p.id == id))
    };
    let (e_open, e_tweak, e_pick, e_parent) = (entry.clone(), entry.clone(), entry.clone(), entry.clone());
    let compare_label = {
        let picked = picked.clone();
        move || {
            if picked() { "Picked: choose another" } else { "Compare" }
        }
    };
    let pressed = {
        let picked = picked.clone();
        move || picked().to_string()
    };
    let delete_id = id.clone();
    let timings = m.timings.clone();

    view! {
        <article class="mesh-card" data-testid="gallery-item" data-mesh-id=id.clone() class:picked=picked>
            <button
                type="button"
                class="thumb"
                on:click=move |_| studio.open(e_open.clone())
                aria-label=format!("Open {name} in the viewer")
            >
                <img src=crate::api::authed_url(&entry.urls.preprocessed) alt="" loading="lazy" />
            </button>
            <div class="mesh-body">
                <h3 class="mesh-title" title=id.clone()>
                    {name.clone()}
                </h3>
                <p class="muted">
                    <time datetime=m.created_at.clone()>{format_date(&m.created_at)}</time>
                    {m.preview.then_some(" · preview")}
                    {m.model.test_model.then_some(" · test model")}
                </p>
                <p class="params-line">{params_summary(&m.params)}</p>
                <p class="muted">
                    {format!("{} vertices · {} faces · {}", m.vertex_count, m.face_count, format_ms(m.total_ms))}
                </p>
                {m
                    .parent_id
                    .clone()
                    .map(|parent| {
                        let label = short_id(&parent);
                        let target = parent.clone();
                        view! {
                            <p class="parent">
                                "Tweaked from "
                                <button
                                    type="button"
                                    class="link"
                                    data-testid="gallery-parent"
                                    on:click=move |_| studio.open_by_id(target.clone())
                                >
                                    {label}
                                </button>
                                " · "
                                <button
                                    type="button"
                                    class="link"
                                    data-testid="gallery-compare-parent"
                                    on:click=move |_| studio.compare_with_parent(e_parent.clone())
                                >
                                    "compare"
                                </button>
                            </p>
                        }
                    })}
                {(!timings.is_empty())
                    .then(|| {
                        view! {
                            <details class="timings">
                                <summary>"Stage timings"</summary>
                                <table>
                                    <tbody>
                                        {timings
                                            .iter()
                                            .map(|t| {
                                                view! {
                                                    <tr>
                                                        <th scope="row">{t.stage.label()}</th>
                                                        <td>{format_ms(t.ms)}</td>
                                                    </tr>
                                                }
                                            })
                                            .collect_view()}
                                    </tbody>
                                </table>
                            </details>
                        }
                    })}
                <div class="card-actions">
                    <button type="button" data-testid="gallery-open" on:click=move |_| studio.open(entry.clone())>
                        "Open"
                    </button>
                    <button type="button" data-testid="gallery-tweak" on:click=move |_| studio.tweak(e_tweak.clone())>
                        "Tweak"
                    </button>
                    <button
                        type="button"
                        data-testid="gallery-compare"
                        aria-pressed=pressed
                        on:click=move |_| studio.pick_for_compare(e_pick.clone())
                    >
                        {compare_label}
                    </button>
                    {move || {
                        let id = delete_id.clone();
                        if confirming.get() {
                            view! {
                                <button
                                    type="button"
                                    class="danger"
                                    data-testid="gallery-delete-confirm"
                                    on:click=move |_| studio.delete(id.clone())
                                >
                                    "Really delete"
                                </button>
                                <button type="button" class="ghost" on:click=move |_| confirming.set(false)>
                                    "Keep"
                                </button>
                            }
                                .into_any()
                        } else {
                            view! {
                                <button
                                    type="button"
                                    class="ghost"
                                    data-testid="gallery-delete"
                                    on:click=move |_| confirming.set(true)
                                >
                                    "Delete"
                                </button>
                            }
                                .into_any()
                        }
                    }}
                </div>
            </div>
        </article>
    }
}

/// The gallery section.
#[component]
pub fn Gallery() -> impl IntoView {
    let studio = Studio::get();
    let g = studio.gallery;
    view! {
        <section class="card gallery" id="gallery" aria-labelledby="gallery-title" data-testid="gallery">
            <div class="card-head">
                <h2 id="gallery-title">"Gallery"</h2>
                <button
                    type="button"
                    class="ghost"
                    data-testid="gallery-refresh"
                    disabled=move || g.with(|g| g.loading)
                    on:click=move |_| studio.refresh_gallery()
                >
                    "Refresh"
                </button>
            </div>
            {move || {
                studio
                    .compare_pick
                    .get()
                    .map(|p| {
                        view! {
                            <p class="help" aria-live="polite">
                                {format!(
                                    "Comparing {}: pick a second mesh.",
                                    p.metadata.source_name.clone().unwrap_or_else(|| short_id(&p.id)),
                                )}
                            </p>
                        }
                    })
            }}
            {move || {
                g.with(|g| g.error.clone())
                    .map(|e| {
                        view! {
                            <div class="error" role="alert" data-testid="gallery-error">
                                <p>
                                    <strong>{format!("Could not load the gallery: {e}")}</strong>
                                </p>
                                <p class="hint">{e.hint()}</p>
                                <button type="button" on:click=move |_| studio.refresh_gallery()>
                                    "Retry"
                                </button>
                            </div>
                        }
                    })
            }}
            {move || {
                g.with(|g| g.loaded && g.items.is_empty())
                    .then(|| {
                        view! { <p class="muted" data-testid="gallery-empty">"No meshes yet. Generated meshes appear here."</p> }
                    })
            }}
            <div class="grid" data-testid="gallery-grid">
                <For each=move || g.with(|g| g.items.clone()) key=|e| e.id.clone() let:entry>
                    <MeshCard entry=entry />
                </For>
            </div>
            {move || {
                g.with(|g| (g.skipped > 0).then_some(g.skipped))
                    .map(|n| view! { <p class="muted">{format!("{n} entries with missing files were skipped.")}</p> })
            }}
            {move || {
                g.with(|g| g.next_cursor.is_some())
                    .then(|| {
                        view! {
                            <button
                                type="button"
                                class="more"
                                data-testid="gallery-more"
                                disabled=move || g.with(|g| g.loading)
                                on:click=move |_| studio.load_more()
                            >
                                "Load more"
                            </button>
                        }
                    })
            }}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_shortened() {
        assert_eq!(format_date("2026-11-27T10:31:07Z"), "2026-11-27 10:31 UTC");
        assert_eq!(format_date("yesterday"), "yesterday");
    }

    #[test]
    fn params_read_in_one_line() {
        assert_eq!(
            params_summary(&GenerateParams::default()),
            "1024 px · remesh none · all vertices · fg 0.85 · bg auto"
        );
        let p = GenerateParams { vertex_count: 5000, remesh: sf3d_shared::RemeshOption::Quad, ..Default::default() };
        assert!(params_summary(&p).contains("remesh quad · 5000 vertices"));
    }

    #[test]
    fn ids_are_shortened_for_links() {
        assert_eq!(short_id("01JDQ3ZK4W9X6YV2B8E5R7T1NM"), "01JDQ3ZK4W…");
        assert_eq!(short_id("short"), "short");
    }
}
