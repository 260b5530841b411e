//! Live progress of a long operation (`--wait`), fed by the mesh's event stream.
//!
//! Input: the events correlated with one command ([`MeshEvent::correlation_id`]) and the flow's
//! task list. Output: a progress bar per cluster (advancing on `TaskStarted` / `TaskFinished`
//! of tasks whose `cluster` is set) and one over all the flow's tasks on a terminal, one line per
//! task elsewhere; then the outcome: [`Finished`] or an [`Error::Failed`] naming the cluster and
//! the error.
//!
//! [`Tracker`] is the pure part (events in, state out) so it is tested without a server.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use tokio::time::Instant;

use super::client::{ApiClient, segment};
use super::error::{Error, Result};
use super::feed::EventFeed;
use super::sse::MeshEvent;

/// Where one cluster stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lane {
    /// Tasks of the flow on this cluster.
    pub total: usize,
    /// Tasks ended.
    pub done: usize,
    /// The task running now.
    pub current: Option<String>,
    /// The error of a failed task.
    pub failed: Option<String>,
}

/// What one event changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not about this command, or nothing to show.
    Ignored,
    /// The command's flow started.
    FlowStarted {
        /// Its id.
        flow_id: i64,
    },
    /// A task started.
    TaskStarted {
        /// The task.
        task: String,
        /// Its cluster.
        cluster: Option<String>,
    },
    /// A task ended.
    TaskFinished {
        /// The task.
        task: String,
        /// Its cluster.
        cluster: Option<String>,
        /// `succeeded`, `failed`, `skipped`.
        outcome: String,
        /// What it said.
        detail: Option<String>,
    },
    /// A worker refused the command.
    Rejected {
        /// Why.
        reason: String,
    },
    /// The flow ended.
    Finished {
        /// `succeeded`, `failed`, `rolled-back`, `cancelled`.
        outcome: String,
        /// Why, when it did not succeed.
        detail: Option<String>,
    },
}

/// The state of one command's flow, built from its events.
#[derive(Debug, Clone)]
pub struct Tracker {
    correlation: String,
    /// The flow, once started.
    pub flow_id: Option<i64>,
    /// The flow's kind (`install`, `delete`, …).
    pub flow: Option<String>,
    /// Tasks in the flow, once known.
    pub total: Option<usize>,
    /// Tasks ended.
    pub done: usize,
    /// Per-cluster lanes, by cluster name.
    pub lanes: BTreeMap<String, Lane>,
    tasks: HashMap<i64, (String, Option<String>)>,
    /// The last failed task: its cluster, name and error.
    pub failure: Option<(Option<String>, String, String)>,
}

/// The cluster a task name is about: `control-plane:sim-1` → `sim-1`.
pub fn task_cluster(name: &str) -> Option<&str> {
    name.split(':').nth(1).filter(|c| !c.is_empty())
}

impl Tracker {
    /// Tracks the events correlated with `command_id`.
    pub fn new(command_id: &str) -> Self {
        Self {
            correlation: command_id.to_owned(),
            flow_id: None,
            flow: None,
            total: None,
            done: 0,
            lanes: BTreeMap::new(),
            tasks: HashMap::new(),
            failure: None,
        }
    }

    /// Sizes the bars from the flow's task names.
    pub fn plan<'a>(&mut self, tasks: impl IntoIterator<Item = &'a str>) {
        let mut total = 0;
        for lane in self.lanes.values_mut() {
            lane.total = 0;
        }
        for task in tasks {
            total += 1;
            if let Some(cluster) = task_cluster(task) {
                self.lanes.entry(cluster.to_owned()).or_default().total += 1;
            }
        }
        for lane in self.lanes.values_mut() {
            lane.total = lane.total.max(lane.done);
        }
        self.total = Some(total.max(self.done));
    }

    /// Applies one event.
    pub fn apply(&mut self, event: &MeshEvent) -> Step {
        if event.correlation_id != self.correlation {
            return Step::Ignored;
        }
        match event.kind.as_str() {
            "CommandRejected" => Step::Rejected {
                reason: event.text("reason").unwrap_or("no reason given").to_owned(),
            },
            "FlowStarted" => {
                let Some(flow_id) = event.number("flow_id") else {
                    return Step::Ignored;
                };
                self.flow_id = Some(flow_id);
                self.flow = event.text("flow").map(str::to_owned);
                Step::FlowStarted { flow_id }
            }
            "TaskStarted" => {
                let task = event.text("task").unwrap_or("?").to_owned();
                let cluster = event.text("cluster").map(str::to_owned);
                if let Some(id) = event.number("task_id") {
                    self.tasks.insert(id, (task.clone(), cluster.clone()));
                }
                if let Some(cluster) = &cluster {
                    let lane = self.lanes.entry(cluster.clone()).or_default();
                    lane.current = Some(task.clone());
                    lane.total = lane.total.max(lane.done + 1);
                }
                Step::TaskStarted { task, cluster }
            }
            "TaskFinished" => {
                let (task, cluster) = event
                    .number("task_id")
                    .and_then(|id| self.tasks.get(&id).cloned())
                    .unwrap_or_else(|| ("?".to_owned(), None));
                let outcome = event.text("outcome").unwrap_or("?").to_owned();
                let detail = event.text("detail").map(str::to_owned);
                self.done += 1;
                if let Some(total) = &mut self.total {
                    *total = (*total).max(self.done);
                }
                if let Some(cluster) = &cluster {
                    let lane = self.lanes.entry(cluster.clone()).or_default();
                    lane.done += 1;
                    lane.total = lane.total.max(lane.done);
                    lane.current = None;
                    if outcome == "failed" {
                        lane.failed = Some(detail.clone().unwrap_or_default());
                    }
                }
                if outcome == "failed" {
                    self.failure = Some((
                        cluster.clone(),
                        task.clone(),
                        detail.clone().unwrap_or_default(),
                    ));
                }
                Step::TaskFinished {
                    task,
                    cluster,
                    outcome,
                    detail,
                }
            }
            "FlowFinished" => Step::Finished {
                outcome: event.text("outcome").unwrap_or("?").to_owned(),
                detail: event.text("detail").map(str::to_owned),
            },
            _ => Step::Ignored,
        }
    }

    /// Why the operation failed, naming the cluster and the error when a task on one failed.
    pub fn failure_message(&self, what: &str, outcome: &str, detail: Option<&str>) -> String {
        match &self.failure {
            Some((Some(cluster), task, error)) => {
                format!("{what} {outcome} on cluster {cluster}: task {task}: {error}")
            }
            Some((None, task, error)) => format!("{what} {outcome}: task {task}: {error}"),
            None => match detail {
                Some(detail) => format!("{what} {outcome}: {detail}"),
                None => format!("{what} {outcome}"),
            },
        }
    }
}

/// How a followed operation ended well.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The flow.
    pub flow_id: Option<i64>,
    /// Its kind.
    pub flow: Option<String>,
    /// Tasks it ran.
    pub tasks: usize,
    /// Clusters it worked on.
    pub clusters: usize,
    /// How long meshctl followed it.
    pub elapsed: Duration,
}

/// The display: bars on a terminal, plain lines elsewhere (logs, CI, tests).
enum View {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        lanes: BTreeMap<String, ProgressBar>,
    },
    Lines,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl View {
    fn new(what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::Lines;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(style(
            "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed:>4} {wide_msg}",
        ));
        overall.set_prefix("overall");
        overall.set_message(format!("{what}: waiting for a worker"));
        overall.enable_steady_tick(Duration::from_millis(200));
        Self::Bars {
            multi,
            overall,
            lanes: BTreeMap::new(),
        }
    }

    fn show(&mut self, tracker: &Tracker, step: &Step) {
        match self {
            Self::Bars {
                multi,
                overall,
                lanes,
            } => {
                if let Some(total) = tracker.total {
                    overall.set_length(total as u64);
                }
                overall.set_position(tracker.done as u64);
                match step {
                    Step::TaskStarted { task, .. } => overall.set_message(task.clone()),
                    Step::Finished { outcome, .. } => overall.set_message(outcome.clone()),
                    _ => {}
                }
                for (name, lane) in &tracker.lanes {
                    let bar = lanes.entry(name.clone()).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(0));
                        bar.set_style(style("{prefix:>12} [{bar:30}] {pos}/{len} {wide_msg}"));
                        bar.set_prefix(name.clone());
                        bar
                    });
                    bar.set_length(lane.total as u64);
                    bar.set_position(lane.done as u64);
                    let message = match (&lane.failed, &lane.current) {
                        (Some(error), _) => format!("failed: {error}"),
                        (None, Some(task)) => task.clone(),
                        (None, None) if lane.total > 0 && lane.done >= lane.total => "done".into(),
                        (None, None) => String::new(),
                    };
                    bar.set_message(message);
                }
            }
            Self::Lines => {
                let counter = match tracker.total {
                    Some(total) => format!("[{}/{total}]", tracker.done),
                    None => format!("[{}]", tracker.done),
                };
                let line = match step {
                    Step::FlowStarted { flow_id } => format!(
                        "flow {flow_id} ({}) started with {} task(s)",
                        tracker.flow.as_deref().unwrap_or("?"),
                        tracker.total.unwrap_or(0)
                    ),
                    Step::TaskStarted { task, cluster } => format!(
                        "{counter} {:<10} {task} started",
                        cluster.as_deref().unwrap_or("-")
                    ),
                    Step::TaskFinished {
                        task,
                        cluster,
                        outcome,
                        ..
                    } => format!(
                        "{counter} {:<10} {task} {outcome}",
                        cluster.as_deref().unwrap_or("-")
                    ),
                    _ => return,
                };
                eprintln!("{line}");
            }
        }
    }

    fn close(self) {
        if let Self::Bars { overall, lanes, .. } = self {
            for bar in lanes.values() {
                bar.abandon();
            }
            overall.abandon();
        }
    }
}

/// Follows the flow started by `command_id` on `mesh` until it ends or `timeout` passes.
pub async fn follow(
    client: &ApiClient,
    feed: &mut EventFeed,
    mesh: &str,
    what: &str,
    command_id: &str,
    timeout: Duration,
) -> Result<Finished> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut tracker = Tracker::new(command_id);
    let mut view = View::new(what);
    let result = loop {
        let frame = match tokio::time::timeout_at(deadline, feed.next()).await {
            Err(_) => {
                break Err(Error::Failed(format!(
                    "{what}: still running after {}s; it goes on in meshd — follow it with \
                     `meshctl events {mesh} -f`",
                    timeout.as_secs()
                )));
            }
            Ok(None) => {
                break Err(Error::Failed(format!(
                    "{what}: the event stream ended before the operation did"
                )));
            }
            Ok(Some(Err(error))) => break Err(error),
            Ok(Some(Ok(frame))) => frame,
        };
        let Some(event) = MeshEvent::from_frame(&frame) else {
            continue;
        };
        let step = tracker.apply(&event);
        match &step {
            Step::Ignored => continue,
            Step::Rejected { reason } => {
                break Err(Error::Failed(format!("{what} was rejected: {reason}")));
            }
            Step::FlowStarted { flow_id } => {
                // The flow's tasks are recorded with it: size the bars before any task starts.
                if let Ok(flow) = client
                    .get(&format!("/meshes/{}/flows/{flow_id}", segment(mesh)))
                    .await
                {
                    let names: Vec<String> = flow
                        .get("tasks")
                        .and_then(Value::as_array)
                        .map(|tasks| {
                            tasks
                                .iter()
                                .filter_map(|t| t.get("name").and_then(Value::as_str))
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    tracker.plan(names.iter().map(String::as_str));
                }
            }
            Step::Finished { outcome, detail } => {
                view.show(&tracker, &step);
                break if outcome == "succeeded" {
                    Ok(Finished {
                        flow_id: tracker.flow_id,
                        flow: tracker.flow.clone(),
                        tasks: tracker.done,
                        clusters: tracker.lanes.len(),
                        elapsed: started.elapsed(),
                    })
                } else {
                    Err(Error::Failed(tracker.failure_message(
                        what,
                        outcome,
                        detail.as_deref(),
                    )))
                };
            }
            _ => {}
        }
        view.show(&tracker, &step);
    };
    view.close();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(correlation: &str, kind: &str, payload: Value) -> MeshEvent {
        serde_json::from_value(json!({
            "kind": kind,
            "correlation_id": correlation,
            "payload": payload,
        }))
        .expect("event")
    }

    #[test]
    fn lanes_advance_per_cluster_and_a_failure_names_its_cluster() {
        let mut tracker = Tracker::new("c1");
        assert_eq!(
            tracker.apply(&event(
                "other",
                "FlowStarted",
                json!({"flow_id": 9, "flow": "x"})
            )),
            Step::Ignored
        );
        assert_eq!(
            tracker.apply(&event(
                "c1",
                "FlowStarted",
                json!({"flow_id": 1, "flow": "install"})
            )),
            Step::FlowStarted { flow_id: 1 }
        );
        tracker.plan([
            "certificates",
            "control-plane:sim-1",
            "control-plane:sim-2",
            "link:sim-1:sim-2",
        ]);
        assert_eq!(tracker.total, Some(4));
        assert_eq!(tracker.lanes["sim-1"].total, 2);
        tracker.apply(&event(
            "c1",
            "TaskStarted",
            json!({"flow_id": 1, "task_id": 11, "task": "control-plane:sim-1", "cluster": "sim-1"}),
        ));
        assert_eq!(
            tracker.lanes["sim-1"].current.as_deref(),
            Some("control-plane:sim-1")
        );
        tracker.apply(&event(
            "c1",
            "TaskFinished",
            json!({"flow_id": 1, "task_id": 11, "outcome": "succeeded"}),
        ));
        assert_eq!(tracker.lanes["sim-1"].done, 1);
        tracker.apply(&event(
            "c1",
            "TaskStarted",
            json!({"flow_id": 1, "task_id": 12, "task": "control-plane:sim-2", "cluster": "sim-2"}),
        ));
        tracker.apply(&event(
            "c1",
            "TaskFinished",
            json!({"flow_id": 1, "task_id": 12, "outcome": "failed", "detail": "istiod crashed"}),
        ));
        assert_eq!(tracker.done, 2);
        let step = tracker.apply(&event(
            "c1",
            "FlowFinished",
            json!({"flow_id": 1, "outcome": "failed", "detail": "x"}),
        ));
        assert!(matches!(step, Step::Finished { .. }));
        assert_eq!(
            tracker.failure_message("create of mesh demo", "failed", Some("x")),
            "create of mesh demo failed on cluster sim-2: task control-plane:sim-2: istiod crashed"
        );
    }

    #[test]
    fn a_rejection_is_reported_with_its_reason() {
        let mut tracker = Tracker::new("c");
        assert_eq!(
            tracker.apply(&event(
                "c",
                "CommandRejected",
                json!({"command": "DeleteMesh", "reason": "mesh demo is busy"})
            )),
            Step::Rejected {
                reason: "mesh demo is busy".into()
            }
        );
    }

    #[test]
    fn task_names_carry_their_cluster() {
        assert_eq!(task_cluster("control-plane:sim-1"), Some("sim-1"));
        assert_eq!(task_cluster("link:sim-1:sim-2"), Some("sim-1"));
        assert_eq!(task_cluster("certificates"), None);
    }
}
