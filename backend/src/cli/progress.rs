//! Terminal progress for long CLI work: one indicatif bar per pipeline stage, driven by pipeline events.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sf3d::pipeline::{Events, StageEvent};
use sf3d_shared::{Stage, StageState};

/// Renders stage events as progress bars (to stderr; hidden when stderr is not a terminal).
pub struct CliProgress {
    multi: MultiProgress,
    current: Option<(Stage, ProgressBar)>,
    prefix: String,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl CliProgress {
    /// Bars prefixed with `prefix` (e.g. the image name).
    pub fn new(prefix: &str) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        Self { multi, current: None, prefix: prefix.to_string() }
    }

    fn finish_current(&mut self, msg: String) {
        if let Some((_, bar)) = self.current.take() {
            bar.set_style(style("{prefix:.dim} {msg}"));
            bar.finish_with_message(msg);
        }
    }
}

impl Events for CliProgress {
    fn emit(&mut self, e: StageEvent) {
        match e.state {
            StageState::Started => {
                self.finish_current(String::new());
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(style("{prefix:.dim} {spinner} {msg} {wide_bar} {pos}/{len} {elapsed}"));
                bar.set_prefix(self.prefix.clone());
                bar.set_message(e.stage.label().to_string());
                bar.set_length(0);
                bar.enable_steady_tick(Duration::from_millis(120));
                self.current = Some((e.stage, bar));
            }
            StageState::Progress => {
                if let Some((_, bar)) = &self.current {
                    bar.set_length(e.max.unwrap_or(0));
                    bar.set_position(e.value.unwrap_or(0));
                }
            }
            StageState::Finished => {
                let msg = format!("✓ {} ({} ms)", e.stage.label(), e.elapsed_ms);
                if self.current.as_ref().is_some_and(|(s, _)| *s == e.stage) {
                    self.finish_current(msg);
                } else {
                    let _ = self.multi.println(format!("{} {msg}", self.prefix));
                }
            }
            StageState::Skipped | StageState::Cached => {
                let what = if e.state == StageState::Cached { "cached" } else { "skipped" };
                let why = e.label.map(|l| format!(": {l}")).unwrap_or_default();
                let _ = self.multi.println(format!("{} · {} ({what}{why})", self.prefix, e.stage.label()));
            }
        }
    }
}

impl Drop for CliProgress {
    fn drop(&mut self) {
        self.finish_current(String::new());
    }
}
