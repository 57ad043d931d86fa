//! Side-by-side comparison of two gallery entries (two versions of a mesh, typically a tweak and its parent):
//! two viewers whose cameras are linked, each entry's parameters and figures, and the parameters that differ.

use leptos::prelude::*;
use sf3d_shared::{GenerateParams, MeshEntry};

use crate::app::Studio;
use crate::components::gallery::{format_date, params_summary};
use crate::components::viewer::Viewer;
use crate::job::format_ms;

/// The parameters that differ between `a` and `b`, as `name: a → b`.
pub fn param_differences(a: &GenerateParams, b: &GenerateParams) -> Vec<String> {
    let mut out = Vec::new();
    let mut diff = |name: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{name}: {x} → {y}"));
        }
    };
    diff("texture resolution", a.texture_resolution.to_string(), b.texture_resolution.to_string());
    diff("foreground ratio", format!("{:.2}", a.foreground_ratio), format!("{:.2}", b.foreground_ratio));
    diff("remesh", a.remesh.to_string(), b.remesh.to_string());
    diff("vertex count", a.vertex_count.to_string(), b.vertex_count.to_string());
    diff("background", a.background.to_string(), b.background.to_string());
    out
}

/// One side of the comparison.
#[component]
fn CompareSide(
    /// The entry shown on this side.
    entry: MeshEntry,
    /// `a` or `b`: the side's `data-testid` suffix.
    side: &'static str,
) -> impl IntoView {
    let m = entry.metadata.clone();
    let name = m.source_name.clone().unwrap_or_else(|| entry.id.clone());
    let testid = if side == "a" { "compare-a" } else { "compare-b" };
    view! {
        <figure class="compare-side">
            <figcaption>
                <strong>{name}</strong>
                <span class="muted">{format!(" · {}", format_date(&m.created_at))}</span>
                <br />
                <span class="params-line">{params_summary(&m.params)}</span>
                <br />
                <span class="muted">
                    {format!("{} vertices · {} faces · {}", m.vertex_count, m.face_count, format_ms(m.total_ms))}
                </span>
            </figcaption>
            <Viewer mesh=Signal::derive(move || Some(entry.clone())) link_group="compare" testid=testid />
        </figure>
    }
}

/// The comparison section, shown while `Studio::compare` holds two entries.
#[component]
pub fn CompareView() -> impl IntoView {
    let studio = Studio::get();
    move || {
        studio.compare.get().map(|(a, b)| {
            let diffs = param_differences(&a.metadata.params, &b.metadata.params);
            view! {
                <section class="card compare" id="compare" aria-labelledby="compare-title" data-testid="compare">
                    <div class="card-head">
                        <h2 id="compare-title">"Compare"</h2>
                        <button
                            type="button"
                            class="ghost"
                            data-testid="compare-close"
                            on:click=move |_| studio.compare.set(None)
                        >
                            "Close"
                        </button>
                    </div>
                    <p class="help">
                        {if diffs.is_empty() {
                            "Same parameters.".to_owned()
                        } else {
                            format!("Differences: {}.", diffs.join("; "))
                        }}
                        " The cameras move together."
                    </p>
                    <div class="compare-grid">
                        <CompareSide entry=a side="a" />
                        <CompareSide entry=b side="b" />
                    </div>
                </section>
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use sf3d_shared::RemeshOption;

    use super::*;

    #[test]
    fn lists_only_changed_parameters() {
        let a = GenerateParams::default();
        assert!(param_differences(&a, &a).is_empty());
        let b = GenerateParams { remesh: RemeshOption::Quad, texture_resolution: 2048, ..a.clone() };
        assert_eq!(param_differences(&a, &b), ["texture resolution: 1024 → 2048", "remesh: none → quad"]);
    }
}
