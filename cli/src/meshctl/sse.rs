//! Server-sent events: a parser of `text/event-stream` bytes, and the event a frame carries.
//!
//! Input: chunks of the stream as they arrive (frames may be split anywhere). Output: complete
//! [`Frame`]s (`id`, `event`, `data`); comments (`: keep-alive`) and `retry:` lines are dropped.
//! [`MeshEvent`] reads a frame's data: the bus envelope's JSON (`kind`, `correlation_id`,
//! `occurred_at`, `payload`).

use serde::Deserialize;
use serde_json::Value;

/// One complete server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `event:` field (the event kind), if any.
    pub event: Option<String>,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// Splits a byte stream into frames.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
    current: Frame,
    has_data: bool,
}

impl Parser {
    /// Feeds a chunk; returns the frames it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Frame> {
        self.pending.extend_from_slice(chunk);
        let mut frames = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if self.has_data || self.current.event.is_some() {
                    frames.push(std::mem::take(&mut self.current));
                } else {
                    self.current = Frame::default();
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = Some(value.to_owned()),
                "event" => self.current.event = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        frames
    }
}

/// A mesh event as the stream carries it (the bus envelope's wire form).
#[derive(Debug, Clone, Deserialize)]
pub struct MeshEvent {
    /// The event's id.
    #[serde(default)]
    pub id: String,
    /// `FlowStarted`, `TaskFinished`, …
    pub kind: String,
    /// When it happened (RFC 3339).
    #[serde(default)]
    pub occurred_at: String,
    /// The mesh.
    #[serde(default)]
    pub mesh: String,
    /// Who caused it.
    #[serde(default)]
    pub principal: String,
    /// The id shared by a command and every event that follows from it.
    #[serde(default)]
    pub correlation_id: String,
    /// The event's own fields.
    #[serde(default)]
    pub payload: Value,
}

impl MeshEvent {
    /// Reads a frame's data.
    pub fn from_frame(frame: &Frame) -> Option<Self> {
        serde_json::from_str(&frame.data).ok()
    }

    /// A payload field as text.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.payload.get(field).and_then(Value::as_str)
    }

    /// A payload field as a number.
    pub fn number(&self, field: &str) -> Option<i64> {
        self.payload.get(field).and_then(Value::as_i64)
    }

    /// One line for people: the time, the kind and what it says.
    pub fn summary(&self) -> String {
        let time = chrono::DateTime::parse_from_rfc3339(&self.occurred_at)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|_| self.occurred_at.clone());
        format!("{time}  {:<18} {}", self.kind, self.details())
    }

    /// What the event says, without time and kind.
    pub fn details(&self) -> String {
        let flow = self.number("flow_id").map(|f| format!("flow {f}"));
        let parts: Vec<String> = match self.kind.as_str() {
            "CommandAccepted" => vec![format!("{} accepted", self.text("command").unwrap_or("?"))],
            "CommandRejected" => vec![format!(
                "{} rejected: {}",
                self.text("command").unwrap_or("?"),
                self.text("reason").unwrap_or("")
            )],
            "MeshCreated" => vec![format!(
                "version {}, {}, clusters {}",
                self.text("version").unwrap_or("?"),
                self.text("mode").unwrap_or("?"),
                self.payload
                    .get("clusters")
                    .and_then(Value::as_array)
                    .map(|c| c
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            )],
            "FlowStarted" => [flow, self.text("flow").map(str::to_owned)]
                .into_iter()
                .flatten()
                .collect(),
            "FlowFinished" => [
                flow,
                self.text("outcome").map(str::to_owned),
                self.text("detail").map(|d| format!("({d})")),
            ]
            .into_iter()
            .flatten()
            .collect(),
            "TaskStarted" => [
                self.text("task").map(str::to_owned),
                self.text("cluster").map(|c| format!("on {c}")),
            ]
            .into_iter()
            .flatten()
            .collect(),
            "TaskFinished" => [
                self.number("task_id").map(|t| format!("task {t}")),
                self.text("outcome").map(str::to_owned),
                self.text("detail").map(|d| format!("({d})")),
            ]
            .into_iter()
            .flatten()
            .collect(),
            _ => vec![self.payload.to_string()],
        };
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_are_put_back_together() {
        let text = "retry: 3000\n\nid: 1\nevent: FlowStarted\ndata: {\"a\":\n: keep-alive\n\ndata: 1}\n\nid: bus-2\r\nevent: X\r\ndata: y\r\n\r\n";
        let mut parser = Parser::default();
        let mut frames = Vec::new();
        for chunk in text.as_bytes().chunks(3) {
            frames.extend(parser.feed(chunk));
        }
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert_eq!(frames[0].id.as_deref(), Some("1"));
        assert_eq!(frames[0].event.as_deref(), Some("FlowStarted"));
        assert_eq!(frames[0].data, "{\"a\":");
        assert_eq!(frames[1].data, "1}");
        assert_eq!(frames[2].id.as_deref(), Some("bus-2"));
        assert_eq!(frames[2].data, "y");
    }

    #[test]
    fn an_envelope_reads_as_an_event_with_a_summary() {
        let frame = Frame {
            id: Some("3".into()),
            event: Some("TaskStarted".into()),
            data: r#"{"id":"e","kind":"TaskStarted","version":1,"occurred_at":"2026-01-02T03:04:05.6Z","tenant":"t","mesh":"demo","principal":"p","correlation_id":"c","payload":{"flow_id":1,"task_id":2,"task":"control-plane:sim-1","cluster":"sim-1"}}"#.into(),
        };
        let event = MeshEvent::from_frame(&frame).expect("event");
        assert_eq!(event.correlation_id, "c");
        assert_eq!(
            event.summary(),
            "2026-01-02 03:04:05  TaskStarted        control-plane:sim-1 on sim-1"
        );
    }
}
