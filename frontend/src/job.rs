//! The job shown in the progress panel, and how server messages change it.
//!
//! Pure state (no DOM, no socket), so the rules are unit-tested on the host: which messages concern the job,
//! how stage events map to rows, when the job is over. The stage rows follow `Stage::ALL`, the single list the
//! engine, server and UI share.

use sf3d_shared::ErrorCode;
use sf3d_shared::protocol::{JobState, ServerMessage, StageSnapshot};
use sf3d_shared::stage::{Stage, StageState};

/// Something that went wrong, as the UI shows it: what happened and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The server's error code, when the server reported it.
    pub code: Option<ErrorCode>,
    /// What happened.
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// The parameter at fault, for `invalid_params`.
    pub field: Option<String>,
}

impl Problem {
    /// A problem the server reported; the hint comes from `ErrorCode::hint`.
    pub fn server(code: ErrorCode, message: impl Into<String>, field: Option<String>) -> Self {
        Self { code: Some(code), message: message.into(), hint: code.hint().to_owned(), field }
    }

    /// A problem found on this side (a client-side check, a closed socket).
    pub fn local(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { code: None, message: message.into(), hint: hint.into(), field: None }
    }
}

/// What the UI shows for one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStatus {
    /// No event yet.
    Pending,
    /// Started, no progress reported yet.
    Running,
    /// Reported `value` of `max`.
    Progress,
    /// Finished.
    Done,
    /// Taken from the scene-code cache.
    Cached,
    /// Did not apply.
    Skipped,
}

impl StageStatus {
    /// The status a wire state leads to.
    pub fn from_wire(state: StageState) -> Self {
        match state {
            StageState::Started => StageStatus::Running,
            StageState::Progress => StageStatus::Progress,
            StageState::Finished => StageStatus::Done,
            StageState::Cached => StageStatus::Cached,
            StageState::Skipped => StageStatus::Skipped,
        }
    }

    /// The name used in the page (`data-state` and the visible word).
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Pending => "pending",
            StageStatus::Running => "running",
            StageStatus::Progress => "progress",
            StageStatus::Done => "done",
            StageStatus::Cached => "cached",
            StageStatus::Skipped => "skipped",
        }
    }

    /// Whether no further event follows.
    pub fn is_terminal(self) -> bool {
        matches!(self, StageStatus::Done | StageStatus::Cached | StageStatus::Skipped)
    }
}

/// One row of the stage list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRow {
    /// The stage.
    pub stage: Stage,
    /// Its status.
    pub status: StageStatus,
    /// Progress value, with `max`.
    pub value: Option<u64>,
    /// Progress maximum.
    pub max: Option<u64>,
    /// Milliseconds since the stage started (its duration once terminal).
    pub elapsed_ms: u64,
    /// The server's extra words (`"image has alpha"`, `"block 2/4"`).
    pub label: Option<String>,
}

impl StageRow {
    fn pending(stage: Stage) -> Self {
        Self { stage, status: StageStatus::Pending, value: None, max: None, elapsed_ms: 0, label: None }
    }

    /// How much of this stage is done, in `0.0..=1.0`.
    pub fn fraction(&self) -> f64 {
        match (self.status, self.value, self.max) {
            (s, _, _) if s.is_terminal() => 1.0,
            (StageStatus::Progress, Some(v), Some(m)) if m > 0 => (v as f64 / m as f64).clamp(0.0, 1.0),
            _ => 0.0,
        }
    }
}

/// Where the job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing submitted yet.
    Idle,
    /// Sent, waiting for `accepted`.
    Submitting,
    /// Re-attaching after a reload or reconnect (`subscribe` sent, waiting for `status`).
    Resuming,
    /// In the queue.
    Queued,
    /// On the worker.
    Running,
    /// Finished with a mesh.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl Phase {
    /// The name used in the page (`data-phase`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Submitting => "submitting",
            Phase::Resuming => "resuming",
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
        }
    }
}

/// The job the progress panel follows.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// Server job id, once `accepted` (or known from the session after a reload).
    pub job_id: Option<String>,
    /// Our `request_id`, to match `accepted`.
    pub request_id: Option<String>,
    /// Life stage.
    pub phase: Phase,
    /// Jobs ahead while queued.
    pub position: Option<u32>,
    /// One row per `Stage::ALL` entry.
    pub stages: Vec<StageRow>,
    /// Why it failed.
    pub error: Option<Problem>,
    /// Gallery id of the latest asset (the preview, then the final one).
    pub mesh_id: Option<String>,
}

impl Default for JobView {
    fn default() -> Self {
        Self {
            job_id: None,
            request_id: None,
            phase: Phase::Idle,
            position: None,
            stages: Stage::ALL.into_iter().map(StageRow::pending).collect(),
            error: None,
            mesh_id: None,
        }
    }
}

impl JobView {
    /// A request just sent with `request_id`.
    pub fn submitting(request_id: impl Into<String>) -> Self {
        Self { request_id: Some(request_id.into()), phase: Phase::Submitting, ..Self::default() }
    }

    /// A job known only by id (kept in the session across a reload).
    pub fn resuming(job_id: impl Into<String>) -> Self {
        Self { job_id: Some(job_id.into()), phase: Phase::Resuming, ..Self::default() }
    }

    /// A request that failed before the server took it (a client-side check, a closed socket).
    pub fn failed(problem: Problem) -> Self {
        Self { phase: Phase::Failed, error: Some(problem), ..Self::default() }
    }

    /// Whether the job may still change (so the cancel button and re-subscription apply).
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Submitting | Phase::Resuming | Phase::Queued | Phase::Running)
    }

    /// Whether `msg` is about this job.
    pub fn concerns(&self, msg: &ServerMessage) -> bool {
        match msg {
            ServerMessage::Hello { .. } => false,
            ServerMessage::Accepted { request_id, .. } => {
                self.phase == Phase::Submitting && request_id.is_some() && *request_id == self.request_id
            }
            // An error without a job answers the last message we sent: while submitting, that is our request.
            // A subscribe to a job the server no longer knows may be answered the same way.
            ServerMessage::Error { job_id: None, .. } => {
                matches!(self.phase, Phase::Submitting | Phase::Resuming)
            }
            other => other.job_id().is_some() && other.job_id() == self.job_id.as_deref(),
        }
    }

    /// Applies `msg` if it concerns this job; returns whether it did.
    pub fn apply(&mut self, msg: &ServerMessage) -> bool {
        if !self.concerns(msg) {
            return false;
        }
        match msg {
            ServerMessage::Hello { .. } => {}
            ServerMessage::Accepted { job_id, position, .. } => {
                self.job_id = Some(job_id.clone());
                self.phase = Phase::Queued;
                self.position = Some(*position);
            }
            ServerMessage::Queue { position, .. } => {
                if self.is_active() {
                    self.phase = Phase::Queued;
                    self.position = Some(*position);
                }
            }
            ServerMessage::Status { state, position, stages, .. } => {
                self.phase = match state {
                    JobState::Queued => Phase::Queued,
                    JobState::Running => Phase::Running,
                    JobState::Succeeded => Phase::Succeeded,
                    JobState::Failed => Phase::Failed,
                    JobState::Cancelled => Phase::Cancelled,
                };
                self.position = *position;
                for snap in stages {
                    self.apply_snapshot(snap);
                }
            }
            ServerMessage::Stage { stage, state, value, max, elapsed_ms, label, .. } => {
                if self.is_active() {
                    self.phase = Phase::Running;
                    self.position = None;
                }
                if let Some(row) = self.stages.get_mut(stage.index()) {
                    row.status = StageStatus::from_wire(*state);
                    row.elapsed_ms = *elapsed_ms;
                    if value.is_some() || max.is_some() {
                        row.value = *value;
                        row.max = *max;
                    }
                    if label.is_some() {
                        row.label.clone_from(label);
                    }
                }
            }
            ServerMessage::Preview { mesh_id, .. } => self.mesh_id = Some(mesh_id.clone()),
            ServerMessage::Done { mesh_id, .. } => {
                self.mesh_id = Some(mesh_id.clone());
                self.phase = Phase::Succeeded;
                self.position = None;
            }
            ServerMessage::Cancelled { .. } => {
                self.phase = Phase::Cancelled;
                self.position = None;
            }
            ServerMessage::Error { code, message, field, .. } => {
                self.phase = Phase::Failed;
                self.position = None;
                self.error = Some(if *code == ErrorCode::NotFound {
                    // Only a re-attach can get `not_found` for our job: the server restarted and forgot it.
                    Problem {
                        code: Some(ErrorCode::NotFound),
                        message: "The server restarted and no longer knows this job.".into(),
                        hint: "If it had finished before the restart, its mesh is in the gallery; otherwise start it \
                               again."
                            .into(),
                        field: None,
                    }
                } else {
                    Problem::server(*code, message.clone(), field.clone())
                });
            }
        }
        true
    }

    fn apply_snapshot(&mut self, snap: &StageSnapshot) {
        if let Some(row) = self.stages.get_mut(snap.stage.index()) {
            row.status = StageStatus::from_wire(snap.state);
            row.value = snap.value;
            row.max = snap.max;
            row.elapsed_ms = snap.elapsed_ms;
        }
    }

    /// Overall progress in `0.0..=1.0`: stages done plus the fraction of the running one, over all stages.
    pub fn fraction(&self) -> f64 {
        if self.phase == Phase::Succeeded {
            return 1.0;
        }
        let n = self.stages.len().max(1) as f64;
        self.stages.iter().map(StageRow::fraction).sum::<f64>() / n
    }
}

/// Formats a duration for the stage list: `35 ms`, `1.2 s`, `2 min 05 s`.
pub fn format_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "–".into();
    }
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use sf3d_shared::MeshUrls;

    use super::*;

    fn stage(job: &str, stage: Stage, state: StageState) -> ServerMessage {
        ServerMessage::Stage { job_id: job.into(), stage, state, value: None, max: None, elapsed_ms: 7, label: None }
    }

    fn accepted(job: &str, request: &str, position: u32) -> ServerMessage {
        ServerMessage::Accepted { job_id: job.into(), request_id: Some(request.into()), position }
    }

    #[test]
    fn accepted_only_matches_our_request() {
        let mut job = JobView::submitting("r2");
        assert!(!job.apply(&accepted("J1", "r1", 0)), "another tab's request");
        assert_eq!(job.phase, Phase::Submitting);
        assert!(job.apply(&accepted("J2", "r2", 3)));
        assert_eq!((job.job_id.as_deref(), job.phase, job.position), (Some("J2"), Phase::Queued, Some(3)));
        assert!(!job.apply(&stage("J1", Stage::Decode, StageState::Started)), "events of another job");
        assert_eq!(job.stages[0].status, StageStatus::Pending);
    }

    #[test]
    fn stage_events_fill_rows_and_the_job_succeeds() {
        let mut job = JobView::submitting("r1");
        job.apply(&accepted("J", "r1", 0));
        job.apply(&stage("J", Stage::Decode, StageState::Started));
        assert_eq!((job.phase, job.position), (Phase::Running, None));
        job.apply(&ServerMessage::Stage {
            job_id: "J".into(),
            stage: Stage::Backbone,
            state: StageState::Progress,
            value: Some(1),
            max: Some(4),
            elapsed_ms: 500,
            label: Some("block 1/4".into()),
        });
        let row = &job.stages[Stage::Backbone.index()];
        assert_eq!(
            (row.status, row.fraction(), row.label.as_deref()),
            (StageStatus::Progress, 0.25, Some("block 1/4"))
        );
        for s in Stage::ALL {
            job.apply(&stage("J", s, if s == Stage::Remesh { StageState::Skipped } else { StageState::Finished }));
        }
        assert!(job.stages.iter().all(|r| r.status.is_terminal()));
        assert!((job.fraction() - 1.0).abs() < 1e-9);
        assert_eq!(job.stages[Stage::Backbone.index()].label.as_deref(), Some("block 1/4"), "labels persist");
        let urls = MeshUrls::for_mesh("M");
        let metadata = Box::new(test_metadata());
        assert!(job.apply(&ServerMessage::Done { job_id: "J".into(), mesh_id: "M".into(), urls, metadata }));
        assert_eq!((job.phase, job.mesh_id.as_deref(), job.is_active()), (Phase::Succeeded, Some("M"), false));
    }

    #[test]
    fn an_error_without_job_id_fails_a_pending_submission_only() {
        let refusal = ServerMessage::Error {
            job_id: None,
            code: ErrorCode::InvalidParams,
            message: "invalid vertex_count".into(),
            field: Some("vertex_count".into()),
            retry_after: None,
        };
        let mut idle = JobView::default();
        assert!(!idle.apply(&refusal));
        let mut job = JobView::submitting("r1");
        assert!(job.apply(&refusal));
        assert_eq!(job.phase, Phase::Failed);
        assert_eq!(job.error.as_ref().and_then(|e| e.field.as_deref()), Some("vertex_count"));
    }

    #[test]
    fn status_restores_a_resumed_job() {
        let mut job = JobView::resuming("J");
        assert!(job.is_active());
        job.apply(&ServerMessage::Status {
            job_id: "J".into(),
            state: JobState::Running,
            position: None,
            stages: vec![
                StageSnapshot {
                    stage: Stage::Decode,
                    state: StageState::Finished,
                    value: None,
                    max: None,
                    elapsed_ms: 12,
                },
                StageSnapshot {
                    stage: Stage::Backbone,
                    state: StageState::Progress,
                    value: Some(1),
                    max: Some(4),
                    elapsed_ms: 9,
                },
            ],
        });
        assert_eq!(job.phase, Phase::Running);
        assert_eq!(job.stages[0].status, StageStatus::Done);
        assert_eq!(job.stages[Stage::Backbone.index()].fraction(), 0.25);
        assert!(job.fraction() > 0.0 && job.fraction() < 1.0);
    }

    #[test]
    fn cancelled_and_failed_jobs_are_over() {
        let mut job = JobView::resuming("J");
        job.apply(&ServerMessage::Cancelled { job_id: "J".into() });
        assert_eq!((job.phase, job.is_active()), (Phase::Cancelled, false));
        let mut job = JobView::resuming("J");
        job.apply(&ServerMessage::Error {
            job_id: Some("J".into()),
            code: ErrorCode::NoSurface,
            message: "no surface".into(),
            field: None,
            retry_after: None,
        });
        let error = job.error.expect("an error");
        assert_eq!((job.phase, error.code), (Phase::Failed, Some(ErrorCode::NoSurface)));
        assert_eq!(error.hint, ErrorCode::NoSurface.hint());
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_ms(35.0), "35 ms");
        assert_eq!(format_ms(1234.0), "1.2 s");
        assert_eq!(format_ms(125_000.0), "2 min 05 s");
        assert_eq!(format_ms(f64::NAN), "–");
    }

    fn test_metadata() -> sf3d_shared::MeshMetadata {
        serde_json::from_str(
            r#"{"mesh_id": "M", "created_at": "2026-11-27T10:30:00Z",
                "params": {}, "model": {"id": "builtin-test", "test_model": true, "dtype": "f32"},
                "device": {"kind": "cpu", "name": "cpu"}, "timings": [], "total_ms": 1.0,
                "vertex_count": 3, "face_count": 1, "roughness": 0.5, "metallic": 0.0,
                "glb_sha256": "00", "glb_bytes": 10, "generator": "t"}"#,
        )
        .expect("metadata parses")
    }
}
