//! The runner's own metrics: runs by outcome and how long they took, tokens per team, model turns
//! and tool calls, all read from the finished run's transcript (one place, after the run, so the
//! agent loop stays free of bookkeeping).
//!
//! Cardinality: `tokens` is labelled by org and team (two series per team: 20,000 at 10,000
//! teams, which one Prometheus holds easily); `tool_calls` by tool name, bounded by the toolsets
//! teams configure.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use switchyard_common::telemetry::Metrics;

use crate::agent::{Step, Transcript};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    org: String,
    team: String,
    /// `input` or `output`.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
    /// `ok` or `error`.
    outcome: &'static str,
}

#[derive(Clone)]
pub struct RunMetrics {
    runs: Family<StatusLabels, Counter>,
    seconds: Family<StatusLabels, Histogram>,
    tokens: Family<TokenLabels, Counter>,
    turn_seconds: Histogram,
    tool_calls: Family<ToolLabels, Counter>,
}

impl std::fmt::Debug for RunMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunMetrics")
    }
}

impl RunMetrics {
    pub fn new(registry: &Metrics) -> Self {
        let m = Self {
            runs: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 16))
            }),
            tokens: Family::default(),
            turn_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            tool_calls: Family::default(),
        };
        registry.register("runs", "Agent runs finished, by status", m.runs.clone());
        registry.register(
            "run_duration_seconds",
            "How long agent runs took, by status",
            m.seconds.clone(),
        );
        registry.register(
            "tokens",
            "Model tokens used by runs, by org, team and kind (input or output)",
            m.tokens.clone(),
        );
        registry.register(
            "model_turn_duration_seconds",
            "How long the model took to answer one turn",
            m.turn_seconds.clone(),
        );
        registry.register(
            "tool_calls",
            "Tool calls made by agents, by tool and outcome",
            m.tool_calls.clone(),
        );
        m
    }

    /// Records a finished run.
    pub fn finished(
        &self,
        org: &str,
        team: &str,
        status: &str,
        took: Duration,
        transcript: &Transcript,
    ) {
        let labels = StatusLabels {
            status: status.to_owned(),
        };
        self.runs.get_or_create(&labels).inc();
        self.seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        for (kind, n) in [
            ("input", transcript.usage.input_tokens),
            ("output", transcript.usage.output_tokens),
        ] {
            self.tokens
                .get_or_create(&TokenLabels {
                    org: org.to_owned(),
                    team: team.to_owned(),
                    kind,
                })
                .inc_by(n);
        }
        self.steps(transcript);
    }

    /// Model turns and tool calls, a sub-agent's included.
    fn steps(&self, transcript: &Transcript) {
        for step in &transcript.steps {
            match step {
                Step::Model { duration_ms, .. } => {
                    self.turn_seconds.observe(*duration_ms as f64 / 1000.0);
                }
                Step::Tool {
                    name,
                    error,
                    sub_agent,
                    ..
                } => {
                    self.tool_calls
                        .get_or_create(&ToolLabels {
                            tool: name.clone(),
                            outcome: if *error { "error" } else { "ok" },
                        })
                        .inc();
                    if let Some(sub) = sub_agent {
                        self.steps(sub);
                    }
                }
                _ => {}
            }
        }
    }
}
