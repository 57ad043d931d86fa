//! The parameter panel: SF3D's options with the defaults and ranges of `sf3d_shared::GenerateParams`, the
//! error of the offending field shown next to it (client-side `GenerateParams::validate`, or the server's
//! `invalid_params`), reset to defaults, and the start button.

use leptos::prelude::*;
use sf3d_shared::{BackgroundMode, GenerateParams, ParamError, RemeshOption};

use crate::app::{ConnState, Studio};

type P = GenerateParams;

/// The error to show next to `field`, if any (unparsable text first, then validation).
fn field_error(studio: Studio, field: &'static str) -> impl Fn() -> Option<String> + Copy {
    move || {
        let pick = |e: Option<ParamError>| e.filter(|e| e.field == field).map(|e| e.message);
        pick(studio.draft_error.get()).or_else(|| pick(studio.param_error.get()))
    }
}

/// The `<p>` under a field holding its error; `id` is what the input's `aria-describedby` points at.
#[component]
fn FieldError(
    /// Wire name of the field (`vertex_count`); the element gets `data-testid="error-<field>"`.
    field: &'static str,
    /// The message, when the field is in error.
    message: Signal<Option<String>>,
) -> impl IntoView {
    view! {
        <p
            class="field-error"
            id=format!("error-{field}")
            data-testid=format!("error-{field}")
            role="alert"
            hidden=move || message.with(Option::is_none)
        >
            {move || message.get().unwrap_or_default()}
        </p>
    }
}

fn remesh_label(r: RemeshOption) -> &'static str {
    match r {
        RemeshOption::None => "None (marching tetrahedra)",
        RemeshOption::Triangle => "Triangle (isotropic)",
        RemeshOption::Quad => "Quad (quad-dominant)",
    }
}

fn background_label(b: BackgroundMode) -> &'static str {
    match b {
        BackgroundMode::Auto => "Auto (keep transparency)",
        BackgroundMode::Always => "Always remove",
        BackgroundMode::Never => "Never remove",
    }
}

/// Rounds a slider's foreground ratio to the UI's 0.05 grid, so `0.85` is not sent as `0.8500000001`.
pub fn snap_ratio(v: f32) -> f32 {
    (v * 20.0).round() / 20.0
}

/// Every SF3D option, with validation, reset and the start button.
#[component]
pub fn ParamsPanel() -> impl IntoView {
    let studio = Studio::get();
    let params = studio.params;
    // Any valid edit re-validates, so a fixed field clears its error at once.
    let edit = move |f: &dyn Fn(&mut GenerateParams)| {
        params.update(|p| f(p));
        if studio.param_error.get_untracked().is_some() {
            studio.param_error.set(params.with_untracked(|p| p.validate().err()));
        }
    };

    let on_vertex_input = move |ev: leptos::ev::Event| {
        let text = event_target_value(&ev);
        match text.trim().parse::<i32>() {
            Ok(v) => {
                studio.draft_error.set(None);
                edit(&|p| p.vertex_count = v);
                studio.param_error.set(params.with_untracked(|p| p.validate().err()));
            }
            Err(_) => studio.draft_error.set(Some(ParamError::new(
                "vertex_count",
                format!("enter −1 or a whole number from {} to {}", P::VERTEX_COUNT_MIN, P::VERTEX_COUNT_MAX),
            ))),
        }
    };

    // Range inputs clamp a value set before their min/max exist (the default max is 100), so their values are
    // pushed after mount and on every change, instead of through `prop:value` at creation.
    let texture_ref = NodeRef::<leptos::html::Input>::new();
    let ratio_ref = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        let (texture, ratio) = params.with(|p| (p.texture_resolution, p.foreground_ratio));
        if let Some(input) = texture_ref.get() {
            input.set_value(&texture.to_string());
        }
        if let Some(input) = ratio_ref.get() {
            input.set_value(&format!("{ratio:.2}"));
        }
    });

    let busy = move || studio.job.with(|j| j.is_active());
    let can_start = move || {
        !busy()
            && studio.conn.with(|c| *c == ConnState::Connected)
            && (studio.tweak.with(Option::is_some) || studio.upload.with(Option::is_some))
    };
    let start_label = move || {
        if studio.tweak.with(Option::is_some) { "Regenerate" } else { "Generate 3D model" }
    };
    let start_hint = move || {
        if busy() {
            "A job is running."
        } else if !studio.conn.with(|c| *c == ConnState::Connected) {
            "Waiting for the server connection."
        } else if !(studio.tweak.with(Option::is_some) || studio.upload.with(Option::is_some)) {
            "Choose an image first."
        } else {
            ""
        }
    };

    view! {
        <section class="card params" id="params" aria-labelledby="params-title">
            <h2 id="params-title">"2 · Parameters"</h2>
            <form
                class="fields"
                on:submit=move |ev| {
                    ev.prevent_default();
                    studio.start();
                }
            >
                <div class="field">
                    <label for="p-texture">
                        "Texture resolution "
                        <output for="p-texture" data-testid="value-texture_resolution">
                            {move || format!("{} px", params.with(|p| p.texture_resolution))}
                        </output>
                    </label>
                    <input
                        id="p-texture"
                        type="range"
                        data-testid="param-texture_resolution"
                        min=P::TEXTURE_RESOLUTION_MIN
                        max=P::TEXTURE_RESOLUTION_MAX
                        step=P::TEXTURE_RESOLUTION_STEP
                        aria-describedby="error-texture_resolution"
                        node_ref=texture_ref
                        on:input=move |ev| {
                            if let Ok(v) = event_target_value(&ev).parse::<u32>() {
                                edit(&|p| p.texture_resolution = v);
                            }
                        }
                    />
                    <FieldError
                        field="texture_resolution"
                        message=Signal::derive(field_error(studio, "texture_resolution"))
                    />
                </div>
                <div class="field">
                    <label for="p-ratio">
                        "Foreground ratio "
                        <output for="p-ratio" data-testid="value-foreground_ratio">
                            {move || format!("{:.2}", params.with(|p| p.foreground_ratio))}
                        </output>
                    </label>
                    <input
                        id="p-ratio"
                        type="range"
                        data-testid="param-foreground_ratio"
                        min=P::FOREGROUND_RATIO_MIN
                        max=P::FOREGROUND_RATIO_MAX
                        step="0.05"
                        aria-describedby="error-foreground_ratio"
                        node_ref=ratio_ref
                        on:input=move |ev| {
                            if let Ok(v) = event_target_value(&ev).parse::<f32>() {
                                edit(&|p| p.foreground_ratio = snap_ratio(v));
                            }
                        }
                    />
                    <FieldError
                        field="foreground_ratio"
                        message=Signal::derive(field_error(studio, "foreground_ratio"))
                    />
                </div>
                <div class="field">
                    <label for="p-remesh">"Remesh"</label>
                    <select
                        id="p-remesh"
                        data-testid="param-remesh"
                        aria-describedby="error-remesh"
                        prop:value=move || params.with(|p| p.remesh.as_str())
                        on:change=move |ev| {
                            if let Ok(v) = event_target_value(&ev).parse::<RemeshOption>() {
                                edit(&|p| p.remesh = v);
                            }
                        }
                    >
                        {RemeshOption::ALL
                            .iter()
                            .map(|r| {
                                view! {
                                    <option value=r.as_str() selected=move || params.with(|p| p.remesh == *r)>
                                        {remesh_label(*r)}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                    <FieldError field="remesh" message=Signal::derive(field_error(studio, "remesh")) />
                </div>
                <div class="field">
                    <label for="p-vertices">"Target vertex count"</label>
                    <input
                        id="p-vertices"
                        type="number"
                        inputmode="numeric"
                        data-testid="param-vertex_count"
                        min="-1"
                        max=P::VERTEX_COUNT_MAX
                        step="1"
                        aria-describedby="vertex-help error-vertex_count"
                        prop:value=move || params.with(|p| p.vertex_count.to_string())
                        on:input=on_vertex_input
                    />
                    <p class="help" id="vertex-help">
                        {format!("−1 keeps the extracted mesh; otherwise {}–{}.", P::VERTEX_COUNT_MIN, P::VERTEX_COUNT_MAX)}
                    </p>
                    <FieldError field="vertex_count" message=Signal::derive(field_error(studio, "vertex_count")) />
                </div>
                <div class="field">
                    <label for="p-background">"Background removal"</label>
                    <select
                        id="p-background"
                        data-testid="param-background"
                        aria-describedby="error-background"
                        prop:value=move || params.with(|p| p.background.as_str())
                        on:change=move |ev| {
                            if let Ok(v) = event_target_value(&ev).parse::<BackgroundMode>() {
                                edit(&|p| p.background = v);
                            }
                        }
                    >
                        {BackgroundMode::ALL
                            .iter()
                            .map(|b| {
                                view! {
                                    <option value=b.as_str() selected=move || params.with(|p| p.background == *b)>
                                        {background_label(*b)}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                    <FieldError field="background" message=Signal::derive(field_error(studio, "background")) />
                </div>
                <div class="field checkbox">
                    <input
                        id="p-preview"
                        type="checkbox"
                        data-testid="param-preview"
                        prop:checked=move || params.with(|p| p.preview)
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            edit(&|p| p.preview = on);
                        }
                    />
                    <label for="p-preview">"Quick preview first (512 px texture, no remesh), then the final mesh"</label>
                </div>
                <div class="actions">
                    <button type="submit" class="primary" data-testid="generate" disabled=move || !can_start()>
                        {start_label}
                    </button>
                    <button
                        type="button"
                        class="ghost"
                        data-testid="reset-params"
                        on:click=move |_| studio.reset_params()
                    >
                        "Reset to defaults"
                    </button>
                </div>
                <p class="help" data-testid="start-hint" aria-live="polite">
                    {start_hint}
                </p>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_snaps_to_the_slider_grid_and_stays_valid() {
        assert_eq!(snap_ratio(0.850_000_1), 0.85);
        assert_eq!(snap_ratio(0.5), P::FOREGROUND_RATIO_MIN);
        assert_eq!(snap_ratio(1.0), P::FOREGROUND_RATIO_MAX);
        let p = GenerateParams { foreground_ratio: snap_ratio(0.9749), ..Default::default() };
        assert!(p.validate().is_ok());
        assert_eq!(p.foreground_ratio, 0.95);
    }
}
