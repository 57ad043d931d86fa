//! The server banner: device, model and queue from `GET /api/health` (or the socket's `hello` when health is
//! not in yet), a clear warning when the built-in test model runs, the model's attribution, the socket's state,
//! and a readable "server unreachable" state with a retry button.

use leptos::prelude::*;
use sf3d_shared::{DeviceInfo, ErrorCode, ModelInfo, QueueInfo};

use crate::app::{ConnState, Studio};

fn device_text(d: &DeviceInfo) -> String {
    match d.memory_total_bytes {
        Some(b) => format!("{} ({:.0} GB)", d.name, b as f64 / 1e9),
        None => d.name.clone(),
    }
}

/// The warning shown while the built-in random-weight model runs.
#[component]
fn TestModelWarning() -> impl IntoView {
    view! {
        <p class="warning" role="alert" data-testid="test-model-warning">
            <strong>"Test model. "</strong>
            "The server runs the built-in random-weight model: meshes are shapeless blobs, useful only to check the pipeline. Start "
            <code>"sf3d serve"</code>
            " with the SF3D weights for real results."
        </p>
    }
}

/// How the banner names a background remover (`HealthResponse::background_remover`).
fn remover_text(name: &str) -> String {
    match name {
        "builtin" => "built-in remover (plain backdrops)".to_owned(),
        learned => format!("U²-Net ({learned})"),
    }
}

/// Device, model and queue of a reachable server.
#[component]
fn ServerFacts(
    /// The compute device.
    device: DeviceInfo,
    /// The loaded model.
    model: ModelInfo,
    /// Queue occupancy, when known (health has it, `hello` does not).
    queue: Option<QueueInfo>,
    /// Server software version.
    version: String,
    /// The background remover (health has it, `hello` does not).
    remover: Option<String>,
) -> impl IntoView {
    view! {
        <dl class="facts" data-testid="server-facts">
            <div>
                <dt>"Device"</dt>
                <dd data-testid="health-device">{device_text(&device)}</dd>
            </div>
            <div>
                <dt>"Model"</dt>
                <dd data-testid="health-model">{format!("{} · {}", model.id, model.dtype)}</dd>
            </div>
            {queue
                .map(|q| {
                    view! {
                        <div>
                            <dt>"Queue"</dt>
                            <dd data-testid="health-queue">{format!("{} running, {} waiting", q.running, q.waiting)}</dd>
                        </div>
                    }
                })}
            {remover
                .filter(|r| !r.is_empty())
                .map(|r| {
                    view! {
                        <div>
                            <dt>"Backgrounds"</dt>
                            <dd data-testid="health-remover">{remover_text(&r)}</dd>
                        </div>
                    }
                })}
            <div>
                <dt>"Server"</dt>
                <dd>{version}</dd>
            </div>
        </dl>
        {model.test_model.then(|| view! { <TestModelWarning /> })}
        {model.attribution.map(|a| view! { <p class="attribution" data-testid="attribution">{a}</p> })}
    }
}

/// The connection indicator (socket state in words).
#[component]
fn ConnBadge() -> impl IntoView {
    let studio = Studio::get();
    let text = move || match studio.conn.get() {
        ConnState::Connecting { attempt: 0 } => "Connecting…".to_owned(),
        ConnState::Connecting { attempt } => format!("Reconnecting (attempt {})…", attempt + 1),
        ConnState::Connected => "Live".to_owned(),
        ConnState::Retrying { retry_in_ms } => {
            format!("Connection lost; retrying in {:.1} s", retry_in_ms as f64 / 1000.0)
        }
        ConnState::Mismatch { server } => format!("Protocol {server} is not supported"),
    };
    view! {
        <span class="conn" data-testid="conn-state" data-state=move || studio.conn.with(|c| c.as_str()) aria-live="polite">
            {text}
        </span>
    }
}

/// The banner at the top of the page.
#[component]
pub fn HealthBanner() -> impl IntoView {
    let studio = Studio::get();
    let body = move || {
        if let ConnState::Mismatch { server } = studio.conn.get() {
            return view! {
                <div class="error" role="alert" data-testid="protocol-mismatch">
                    <p>
                        <strong>
                            {format!(
                                "This page speaks protocol {}, the server protocol {server}.",
                                sf3d_shared::PROTOCOL_VERSION,
                            )}
                        </strong>
                    </p>
                    <p class="hint">{ErrorCode::ProtocolMismatch.hint()}</p>
                </div>
            }
            .into_any();
        }
        let connected = studio.conn.with(|c| *c == ConnState::Connected);
        match (studio.health.get(), studio.server.get()) {
            (Some(Ok(h)), _) => view! {
                <ServerFacts
                    device=h.device
                    model=h.model
                    queue=Some(h.queue)
                    version=h.version
                    remover=Some(h.background_remover)
                />
            }
            .into_any(),
            // No health answer (yet), or it failed while the socket is up: show what `hello` said.
            (None, Some(s)) | (Some(Err(_)), Some(s)) if connected => {
                view! { <ServerFacts device=s.device model=s.model queue=None version=s.version remover=None /> }
                    .into_any()
            }
            (Some(Err(e)), _) => {
                let title = if e.is_unreachable() { "Server unreachable" } else { "Server error" };
                view! {
                    <div class="error" role="alert" data-testid="server-unreachable">
                        <p>
                            <strong>{title}</strong>
                            ": "
                            {e.to_string()}
                        </p>
                        <p class="hint">{e.hint()}</p>
                        <button type="button" data-testid="health-retry" on:click=move |_| studio.refresh_health()>
                            "Retry now"
                        </button>
                    </div>
                }
                .into_any()
            }
            (None, _) => {
                view! { <p class="muted" data-testid="health-loading">"Contacting the server…"</p> }.into_any()
            }
        }
    };
    let auth_required = move || {
        studio.server.with(|s| s.as_ref().is_some_and(|s| s.auth_required))
            || studio.health.with(|h| matches!(h, Some(Ok(h)) if h.auth_required))
    };
    view! {
        <div class="health" data-testid="health">
            <ConnBadge />
            {body}
            {move || auth_required().then(|| view! { <ApiKeyForm /> })}
        </div>
    }
}

/// Asks for the API key of a keyed server and keeps it in this browser (localStorage); REST calls send it as a
/// bearer token, the WebSocket and image URLs as a `token` parameter.
#[component]
fn ApiKeyForm() -> impl IntoView {
    let studio = Studio::get();
    let (draft, set_draft) = signal(String::new());
    let (saved, set_saved) = signal(crate::api::api_key().is_some());
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        crate::api::set_api_key(Some(&draft.get_untracked()));
        set_saved.set(crate::api::api_key().is_some());
        crate::ws::reconnect();
        studio.refresh_health();
        studio.refresh_gallery();
    };
    let forget = move |_| {
        crate::api::set_api_key(None);
        set_saved.set(false);
        crate::ws::reconnect();
    };
    view! {
        <form class="api-key" on:submit=save data-testid="api-key-form">
            {move || {
                if saved.get() {
                    view! {
                        <span class="muted">"This server requires an API key; one is saved in this browser. "</span>
                        <button type="button" on:click=forget data-testid="api-key-forget">"Forget key"</button>
                    }
                        .into_any()
                } else {
                    view! {
                        <label for="api-key">"This server requires an API key: "</label>
                        <input
                            id="api-key"
                            type="password"
                            autocomplete="off"
                            data-testid="api-key-input"
                            prop:value=draft
                            on:input=move |ev| set_draft.set(event_target_value(&ev))
                        />
                        <button type="submit" data-testid="api-key-save">"Save"</button>
                    }
                        .into_any()
                }
            }}
        </form>
    }
}
