//! Live progress of the followed job: its phase, queue position, overall progress bar, the stage list
//! (`Stage::ALL` with `Stage::label`, each with its state, time and progress), the cancel button and, when it
//! fails, the error in words with what to do about it (`ErrorCode::hint`).

use leptos::prelude::*;
use sf3d_shared::stage::Stage;

use crate::app::Studio;
use crate::job::{Phase, StageStatus, format_ms};

fn phase_text(phase: Phase, position: Option<u32>) -> String {
    match phase {
        Phase::Idle => "No job yet. Choose an image and start.".into(),
        Phase::Submitting => "Sending the image…".into(),
        Phase::Resuming => "Re-attaching to the running job…".into(),
        Phase::Queued => match position {
            Some(0) | None => "Queued: next to run.".into(),
            Some(1) => "Queued: 1 job ahead.".into(),
            Some(n) => format!("Queued: {n} jobs ahead."),
        },
        Phase::Running => "Running…".into(),
        Phase::Succeeded => "Done.".into(),
        Phase::Failed => "Failed.".into(),
        Phase::Cancelled => "Cancelled.".into(),
    }
}

fn status_word(status: StageStatus, value: Option<u64>, max: Option<u64>) -> String {
    match (status, value, max) {
        (StageStatus::Progress, Some(v), Some(m)) => format!("{v}/{m}"),
        _ => status.as_str().to_owned(),
    }
}

/// One row of the stage list, reading its state from the job.
#[component]
fn StageItem(
    /// The stage this row shows.
    stage: Stage,
) -> impl IntoView {
    let studio = Studio::get();
    let row = Memo::new(move |_| studio.job.with(|j| j.stages.get(stage.index()).cloned()));
    let status = move || row.with(|r| r.as_ref().map_or(StageStatus::Pending, |r| r.status));
    view! {
        <li class="stage" data-testid=format!("stage-{}", stage.as_str()) data-state=move || status().as_str()>
            <span class="stage-dot" aria-hidden="true"></span>
            <span class="stage-name">{stage.label()}</span>
            <span class="stage-state">
                {move || row.with(|r| r.as_ref().map(|r| status_word(r.status, r.value, r.max)).unwrap_or_default())}
            </span>
            <span class="stage-time" data-testid=format!("stage-time-{}", stage.as_str())>
                {move || {
                    row.with(|r| match r {
                        Some(r) if !matches!(r.status, StageStatus::Pending | StageStatus::Cached | StageStatus::Skipped) => {
                            format_ms(r.elapsed_ms as f64)
                        }
                        _ => String::new(),
                    })
                }}
            </span>
            {move || {
                row.with(|r| {
                    r.as_ref()
                        .filter(|r| r.status == StageStatus::Progress)
                        .map(|r| {
                            view! {
                                <progress
                                    class="stage-bar"
                                    max="1"
                                    value=r.fraction()
                                    aria-label=format!("{} progress", stage.label())
                                ></progress>
                            }
                        })
                })
            }}
            {move || {
                row.with(|r| r.as_ref().and_then(|r| r.label.clone()).map(|l| view! { <span class="stage-label">{l}</span> }))
            }}
        </li>
    }
}

/// The progress panel of the followed job.
#[component]
pub fn ProgressPanel() -> impl IntoView {
    let studio = Studio::get();
    let job = studio.job;
    let phase = Memo::new(move |_| job.with(|j| j.phase));
    let active = move || job.with(|j| j.is_active());
    let cancellable = move || job.with(|j| j.is_active() && j.job_id.is_some());

    view! {
        <section class="card progress" aria-labelledby="progress-title" data-testid="progress" data-phase=move || phase.get().as_str()>
            <div class="card-head">
                <h2 id="progress-title">"Progress"</h2>
                <button
                    type="button"
                    class="danger"
                    data-testid="cancel"
                    disabled=move || !cancellable()
                    on:click=move |_| studio.cancel()
                >
                    "Cancel"
                </button>
            </div>
            <p class="phase" data-testid="job-phase" aria-live="polite">
                {move || job.with(|j| phase_text(j.phase, j.position))}
            </p>
            {move || {
                job.with(|j| {
                    (j.phase == crate::job::Phase::Queued)
                        .then(|| {
                            let n = j.position.unwrap_or(0);
                            view! {
                                <p class="queue" data-testid="queue-position" data-position=n>
                                    {format!("Position in queue: {}", n + 1)}
                                </p>
                            }
                        })
                })
            }}
            <progress
                class="job-bar"
                data-testid="job-progress"
                max="1"
                value=move || job.with(|j| j.fraction())
                class:indeterminate=active
                aria-label="Overall progress"
            ></progress>
            <ol class="stages" data-testid="stage-list">
                {Stage::ALL.into_iter().map(|stage| view! { <StageItem stage=stage /> }).collect_view()}
            </ol>
            {move || {
                job.with(|j| j.error.clone())
                    .map(|p| {
                        view! {
                            <div class="error" role="alert" data-testid="job-error">
                                <p>
                                    <strong>{p.message}</strong>
                                </p>
                                <p class="hint">{p.hint}</p>
                                {p.code.map(|c| view! { <p class="code">"Error code: " <code>{c.as_str()}</code></p> })}
                            </div>
                        }
                    })
            }}
            {move || {
                (phase.get() == Phase::Succeeded && job.with(|j| j.mesh_id.is_none()))
                    .then(|| {
                        view! {
                            <p class="help" data-testid="finished-away">
                                "The job finished while this page was away; its mesh is in the gallery."
                            </p>
                        }
                    })
            }}
        </section>
    }
}
