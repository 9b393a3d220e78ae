//! Process metrics as plain atomics, rendered in the Prometheus text exposition format
//! (version 0.0.4) at `/metrics`: sync runs by outcome, run durations (histogram), items by
//! outcome, errors, the scheduler's queue depth and running syncs, and HTTP requests by area
//! (CardDAV, API, dashboard).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `Content-Type` of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the run-duration histogram buckets.
const BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

/// Which part of the HTTP service answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// `/dav/` and `/.well-known/carddav`.
    Carddav,
    /// `/api/v1`.
    Api,
    /// The web page.
    Dashboard,
    /// `/healthz`, `/metrics`, anything else.
    Other,
}

impl Area {
    /// The area of a request path.
    pub fn of_path(path: &str) -> Area {
        if path.starts_with("/dav") || path.starts_with("/.well-known/carddav") {
            Area::Carddav
        } else if path.starts_with("/api/") {
            Area::Api
        } else if path == "/healthz" || path == "/metrics" {
            Area::Other
        } else {
            Area::Dashboard
        }
    }
}

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    runs_succeeded: AtomicU64,
    runs_failed: AtomicU64,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_sum_ms: AtomicU64,
    duration_count: AtomicU64,
    items_added: AtomicU64,
    items_updated: AtomicU64,
    items_deleted: AtomicU64,
    items_conflict: AtomicU64,
    items_error: AtomicU64,
    http_carddav: AtomicU64,
    http_api: AtomicU64,
    http_dashboard: AtomicU64,
    http_other: AtomicU64,
}

/// Gauges read at render time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Due connections waiting for a slot.
    pub queue_depth: usize,
    /// Syncs running.
    pub running: usize,
}

impl Metrics {
    /// Records a finished run.
    pub fn record_run(&self, ok: bool, took: Duration) {
        if ok {
            self.runs_succeeded.fetch_add(1, Ordering::Relaxed);
        } else {
            self.runs_failed.fetch_add(1, Ordering::Relaxed);
        }
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_sum_ms
            .fetch_add(took.as_millis() as u64, Ordering::Relaxed);
        self.duration_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a run's items.
    pub fn record_items(
        &self,
        added: u64,
        updated: u64,
        deleted: u64,
        conflicts: u64,
        errors: u64,
    ) {
        self.items_added.fetch_add(added, Ordering::Relaxed);
        self.items_updated.fetch_add(updated, Ordering::Relaxed);
        self.items_deleted.fetch_add(deleted, Ordering::Relaxed);
        self.items_conflict.fetch_add(conflicts, Ordering::Relaxed);
        self.items_error.fetch_add(errors, Ordering::Relaxed);
    }

    /// Counts one HTTP request.
    pub fn record_request(&self, area: Area) {
        let c = match area {
            Area::Carddav => &self.http_carddav,
            Area::Api => &self.http_api,
            Area::Dashboard => &self.http_dashboard,
            Area::Other => &self.http_other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn render(&self, g: Gauges) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let _ = writeln!(s, "# HELP cardbridge_sync_runs_total Sync runs by outcome.");
        let _ = writeln!(s, "# TYPE cardbridge_sync_runs_total counter");
        let _ = writeln!(
            s,
            "cardbridge_sync_runs_total{{outcome=\"succeeded\"}} {}",
            get(&self.runs_succeeded)
        );
        let _ = writeln!(
            s,
            "cardbridge_sync_runs_total{{outcome=\"failed\"}} {}",
            get(&self.runs_failed)
        );
        let _ = writeln!(
            s,
            "# HELP cardbridge_sync_run_duration_seconds Duration of sync runs."
        );
        let _ = writeln!(s, "# TYPE cardbridge_sync_run_duration_seconds histogram");
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "cardbridge_sync_run_duration_seconds_bucket{{le=\"{le}\"}} {}",
                get(&self.duration_buckets[i])
            );
        }
        let count = get(&self.duration_count);
        let _ = writeln!(
            s,
            "cardbridge_sync_run_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "cardbridge_sync_run_duration_seconds_sum {}",
            get(&self.duration_sum_ms) as f64 / 1000.0
        );
        let _ = writeln!(s, "cardbridge_sync_run_duration_seconds_count {count}");
        let _ = writeln!(
            s,
            "# HELP cardbridge_sync_items_total Items synced, by outcome."
        );
        let _ = writeln!(s, "# TYPE cardbridge_sync_items_total counter");
        for (name, c) in [
            ("added", &self.items_added),
            ("updated", &self.items_updated),
            ("deleted", &self.items_deleted),
            ("conflict", &self.items_conflict),
            ("error", &self.items_error),
        ] {
            let _ = writeln!(
                s,
                "cardbridge_sync_items_total{{outcome=\"{name}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            s,
            "# HELP cardbridge_sync_errors_total Failed runs plus failed items."
        );
        let _ = writeln!(s, "# TYPE cardbridge_sync_errors_total counter");
        let _ = writeln!(
            s,
            "cardbridge_sync_errors_total {}",
            get(&self.runs_failed) + get(&self.items_error)
        );
        let _ = writeln!(
            s,
            "# HELP cardbridge_scheduler_queue_depth Due connections waiting for a slot."
        );
        let _ = writeln!(s, "# TYPE cardbridge_scheduler_queue_depth gauge");
        let _ = writeln!(s, "cardbridge_scheduler_queue_depth {}", g.queue_depth);
        let _ = writeln!(
            s,
            "# HELP cardbridge_scheduler_running Sync runs in progress."
        );
        let _ = writeln!(s, "# TYPE cardbridge_scheduler_running gauge");
        let _ = writeln!(s, "cardbridge_scheduler_running {}", g.running);
        let _ = writeln!(
            s,
            "# HELP cardbridge_http_requests_total HTTP requests by area."
        );
        let _ = writeln!(s, "# TYPE cardbridge_http_requests_total counter");
        for (name, c) in [
            ("carddav", &self.http_carddav),
            ("api", &self.http_api),
            ("dashboard", &self.http_dashboard),
            ("other", &self.http_other),
        ] {
            let _ = writeln!(
                s,
                "cardbridge_http_requests_total{{area=\"{name}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            s,
            "# HELP cardbridge_carddav_requests_total CardDAV requests."
        );
        let _ = writeln!(s, "# TYPE cardbridge_carddav_requests_total counter");
        let _ = writeln!(
            s,
            "cardbridge_carddav_requests_total {}",
            get(&self.http_carddav)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.record_run(true, Duration::from_millis(700));
        m.record_run(false, Duration::from_secs(20));
        m.record_items(3, 2, 1, 1, 4);
        m.record_request(Area::of_path("/dav/u/book/"));
        m.record_request(Area::of_path("/api/v1/persons"));
        let t = m.render(Gauges {
            queue_depth: 5,
            running: 2,
        });
        for line in [
            "cardbridge_sync_runs_total{outcome=\"succeeded\"} 1",
            "cardbridge_sync_runs_total{outcome=\"failed\"} 1",
            "cardbridge_sync_run_duration_seconds_bucket{le=\"0.5\"} 0",
            "cardbridge_sync_run_duration_seconds_bucket{le=\"1\"} 1",
            "cardbridge_sync_run_duration_seconds_bucket{le=\"30\"} 2",
            "cardbridge_sync_run_duration_seconds_bucket{le=\"+Inf\"} 2",
            "cardbridge_sync_run_duration_seconds_sum 20.7",
            "cardbridge_sync_items_total{outcome=\"added\"} 3",
            "cardbridge_sync_errors_total 5",
            "cardbridge_scheduler_queue_depth 5",
            "cardbridge_carddav_requests_total 1",
            "cardbridge_http_requests_total{area=\"api\"} 1",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
        }
    }
}
