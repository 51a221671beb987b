//! Executing runs: each under a lease the runner renews (so a runner that dies is noticed and its
//! runs resumed elsewhere), within the deadline, with every state recorded in the config-service.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard_api::runs::{AgentRun, RunContext, RunRequest, RunUsage, UpdateRun};
use switchyard_common::otel;

use crate::agent::config::AgentConfig;
use crate::agent::{self, Transcript};
use crate::providers::{self, ApiKey, Endpoint, Provider};
use crate::toolsets;
use crate::{AppState, release, reply, reserve};

/// Most bytes of the trigger's payload the model reads.
const TRIGGER_BUDGET: usize = 16 * 1024;

impl AppState {
    pub(crate) fn lease_ms(&self) -> i64 {
        (self.replies.run_lease_seconds.max(1) * 1000) as i64
    }
}

/// Executes a run this runner holds the lease of, renewing it every third of the lease, within
/// the deadline; records the outcome and frees the team's slot. When the lease is lost (the run
/// was cancelled, or this runner stalled and another resumed it) it stops at once, dropping the
/// provider request in flight, and records nothing: the run's state is already someone else's.
pub(crate) async fn execute_leased(state: &AppState, id: &str, req: &RunRequest, ctx: &RunContext) {
    let deadline = Duration::from_secs(state.replies.run_deadline_seconds.max(1));
    let lease_ms = state.lease_ms();
    let started = std::time::Instant::now();
    let mut transcript = Transcript::default();
    let outcome = {
        let work = tokio::time::timeout(deadline, execute(state, id, req, ctx, &mut transcript));
        tokio::pin!(work);
        let mut renew = tokio::time::interval(Duration::from_millis((lease_ms / 3) as u64));
        renew.tick().await;
        loop {
            tokio::select! {
                o = &mut work => break Some(o),
                _ = renew.tick() => match state.config.renew_run_lease(id, &state.runner_id, lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => break None,
                    Err(e) => tracing::warn!(run = %id, error = %e, "could not renew the run's lease; retrying"),
                },
            }
        }
    };
    release(state, &req.org_id, &req.team_id);
    let Some(outcome) = outcome else {
        tracing::warn!(run = %id, "lost the run's lease (cancelled, or resumed by another runner); stopped");
        return;
    };
    let (status, summary, error) = match outcome {
        Ok(Ok(summary)) => ("succeeded", Some(summary), None),
        Ok(Err(e)) => ("failed", None, Some(e)),
        Err(_) => (
            "failed",
            None,
            Some(format!(
                "the run exceeded its {}s deadline",
                deadline.as_secs()
            )),
        ),
    };
    state.run_metrics.finished(
        &req.org_id,
        &req.team_id,
        status,
        started.elapsed(),
        &transcript,
    );
    let error_logged = error.clone();
    if let Err(e) = state
        .record_update(
            id,
            UpdateRun {
                summary,
                error,
                transcript: serde_json::to_value(&transcript).ok(),
                usage: Some(RunUsage {
                    input_tokens: transcript.usage.input_tokens as i64,
                    output_tokens: transcript.usage.output_tokens as i64,
                }),
                config_etag: Some(ctx.etag.clone()),
                ..UpdateRun::to(status)
            },
        )
        .await
    {
        tracing::error!(run = %id, error = %e, "could not record the run's outcome; its lease will lapse and it is resumed");
        return;
    }
    match &error_logged {
        None => {
            tracing::info!(run = %id, org = %req.org_id, team = %req.team_id, status, "run finished")
        }
        Some(e) => {
            tracing::warn!(run = %id, org = %req.org_id, team = %req.team_id, status, error = %e, "run finished")
        }
    }
}

/// Resumes runs whose runner died: every half lease, one recovery sweep in the config-service
/// (which also fails runs past their deadline or attempts), then executes what it leased to us.
/// Runs beside the HTTP server in every replica; the sweep's row locks keep replicas apart.
pub async fn recover_runs(state: AppState) {
    let every = Duration::from_millis((state.lease_ms() / 2).max(100) as u64);
    loop {
        match state
            .config
            .recover_runs(
                &state.runner_id,
                state.lease_ms(),
                state.replies.max_run_attempts,
            )
            .await
        {
            Ok(runs) => {
                for run in runs {
                    let state = state.clone();
                    let AgentRun {
                        id,
                        org_id,
                        team_id,
                        trigger,
                        reply_to,
                        idempotency_key,
                        ..
                    } = run;
                    tokio::spawn(async move {
                        let req = RunRequest {
                            org_id,
                            team_id,
                            trigger,
                            reply_to,
                            idempotency_key: idempotency_key.unwrap_or_default(),
                        };
                        tracing::info!(run = %id, org = %req.org_id, team = %req.team_id, "resuming a run whose runner stopped");
                        let ctx = match state.run_context(&req.org_id, &req.team_id).await {
                            Ok(c) => c,
                            Err(e) => {
                                // Leave the lease to lapse: the next sweep tries again.
                                tracing::warn!(error = %e, "cannot read the config of a resumed run");
                                return;
                            }
                        };
                        reserve(&state, &req.org_id, &req.team_id, u64::MAX);
                        execute_leased(&state, &id, &req, &ctx).await;
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "run recovery sweep failed; retrying"),
        }
        tokio::time::sleep(every).await;
    }
}

async fn execute(
    state: &AppState,
    id: &str,
    req: &RunRequest,
    ctx: &RunContext,
    transcript: &mut Transcript,
) -> std::result::Result<String, String> {
    let config = &ctx.config;
    let mut cfg = AgentConfig::parse(config.get("agent"), state.replies.run_deadline_seconds)?;
    // The day's token budgets: none left, no run; some left, the loop stops when it is used.
    let budgets = &ctx.budgets;
    if let Some((left, whose)) = budgets.remaining() {
        if left == 0 {
            let b = if whose == "org" {
                budgets.org
            } else {
                budgets.team
            };
            return Err(format!(
                "the {whose}'s tokens_per_day budget ({}) is used up today; the run did not start",
                b.limit.unwrap_or_default()
            ));
        }
        cfg.token_budget = Some((left as u64, whose.to_owned()));
    }
    // Every credential the run needs, resolved before it starts (the config-service sent the
    // values of every secret the config refers to).
    let agent_section = config.get("agent").cloned().unwrap_or(Value::Null);
    let mut secrets = toolsets::Secrets::new();
    let names = cfg
        .api_key_secret
        .iter()
        .cloned()
        .chain(toolsets::secret_names(&agent_section));
    for name in names {
        if let std::collections::btree_map::Entry::Vacant(slot) = secrets.entry(name) {
            let value = reply::org_secret(&ctx.secrets, slot.key(), "agent")?;
            slot.insert(value);
        }
    }
    let make = |c: &AgentConfig| -> std::result::Result<Arc<dyn Provider>, String> {
        let endpoint = c.endpoint.as_ref().map(|url| Endpoint {
            url: url.clone(),
            // No key: a local server (Ollama, vLLM) may need none.
            key: ApiKey(
                c.api_key_secret
                    .as_ref()
                    .and_then(|n| secrets.get(n).cloned())
                    .unwrap_or_default(),
            ),
            timeout: Duration::from_secs(c.deadline_seconds),
        });
        Ok(Arc::from(providers::build(
            &c.provider,
            endpoint,
            &state.http,
        )?))
    };
    let provider = make(&cfg)?;
    let trigger = agent::render_trigger(&req.team_id, &req.trigger, TRIGGER_BUDGET);
    // MCP servers: connected once for the agent and its sub-agents, closed when the run ends.
    let mut wanted = cfg.tools.clone();
    for sub in agent_section
        .get("sub_agents")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|s| s.values())
    {
        wanted.extend(
            sub.get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned),
        );
    }
    let (mcp, mcp_problems) =
        toolsets::mcp::connect(agent_section.pointer("/toolsets/mcp"), &wanted, &secrets).await;
    if !mcp_problems.is_empty() {
        tracing::warn!(run = %id, problems = ?mcp_problems, "MCP tools not offered");
    }
    let reach = toolsets::Context {
        org: req.org_id.clone(),
        team: req.team_id.clone(),
        secrets: secrets.clone(),
        http: state.http.clone(),
        kube: state.kube.clone(),
        events: state.orchestrator.clone(),
        github_api_base: state.replies.github_api_base.clone(),
        mcp,
    };
    let (mut tools, mut unavailable) = toolsets::build(&agent_section, &cfg.tools, &reach);
    let (subs, problems) = toolsets::sub_agents::tools_for(
        &agent_section,
        &cfg,
        &provider,
        &cfg.tools,
        1,
        &reach,
        &make,
    );
    for t in subs {
        tools = tools.with(t);
    }
    unavailable.extend(problems);
    unavailable.retain(|t| !tools.has(t));
    if !unavailable.is_empty() {
        tracing::info!(run = %id, tools = ?unavailable, "enabled tools not offered (no toolset settings, not in this version, or a sub-agent that cannot run)");
    }
    // An incident's run hears, between turns, of the signals that join its incident meanwhile.
    let event = req.trigger["event_id"].as_str().unwrap_or_default();
    let joined: Box<dyn agent::Joined> = match &state.orchestrator {
        Some(orch) if req.trigger.get("incident").is_some() && !event.is_empty() => {
            Box::new(IncidentSignals {
                orch: orch.clone(),
                org: req.org_id.clone(),
                event: event.to_owned(),
                run: id.to_owned(),
            })
        }
        _ => Box::new(agent::NoneJoin),
    };
    let answer = agent::run_joined(
        provider.as_ref(),
        &cfg,
        &trigger,
        &tools,
        transcript,
        joined.as_ref(),
    )
    .await;
    tracing::info!(run = %id, turns = transcript.turns, input_tokens = transcript.usage.input_tokens,
        output_tokens = transcript.usage.output_tokens, "agent loop ended");
    let summary = answer.map_err(|e| e.to_string())?;
    let targets = reply::destinations(config, req.reply_to.as_ref());
    if !targets.is_empty() {
        let report = reply::Report::new(id, &summary, transcript);
        let delivered = otel::in_span(
            "agent-runner",
            "reply",
            otel::SpanKind::Internal,
            reply::deliver(state, &ctx.secrets, config, &targets, &report),
        );
        delivered.await?;
    }
    Ok(summary)
}

/// The signals that join an incident run's incident while it is going, from the orchestrator.
/// Asking is best effort: a signal the run could not take goes to a follow-up run.
struct IncidentSignals {
    orch: switchyard_common::clients::OrchestratorClient,
    org: String,
    /// The event that started the run.
    event: String,
    run: String,
}

impl agent::Joined for IncidentSignals {
    fn take(
        &self,
    ) -> futures_util::future::BoxFuture<'_, Vec<switchyard_api::events::JoinedSignal>> {
        Box::pin(async move {
            match self.orch.joined_signals(&self.org, &self.event).await {
                Ok(j) => j.signals,
                Err(e) => {
                    tracing::warn!(run = %self.run, error = %e, "could not ask for signals that joined the incident; a follow-up run will have them");
                    Vec::new()
                }
            }
        })
    }
}
