//! `switchyard eval`: the agent's eval suite (`evals/`). Offline by default: each scenario's scripted
//! model against its recorded tool outputs, in the test command. With `--provider`, `--endpoint`
//! and `--model` (and the key in `SWITCHYARD_EVAL_API_KEY`), a live model answers the same
//! scenarios, with the same recorded tools and assertions.

use std::path::PathBuf;
use std::time::Duration;

use switchyard_agent_runner::evals;
use switchyard_agent_runner::providers::{self, ApiKey, Endpoint};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The scenarios.
    #[arg(long, default_value = "evals")]
    dir: PathBuf,
    /// Only scenarios whose name or kind contains this.
    #[arg(long)]
    filter: Option<String>,
    /// A live provider (`openai`, `anthropic`) instead of each scenario's script.
    #[arg(long, requires_all = ["endpoint", "model"])]
    provider: Option<String>,
    /// The provider's base URL, e.g. https://api.openai.com/v1.
    #[arg(long)]
    endpoint: Option<String>,
    /// The model, e.g. gpt-4.1-mini (replaces each scenario's).
    #[arg(long)]
    model: Option<String>,
    /// The API key (environment only, never an argument).
    #[arg(
        long,
        env = "SWITCHYARD_EVAL_API_KEY",
        hide_env_values = true,
        hide = true
    )]
    api_key: Option<String>,
    /// Fail (exit 1) below this pass rate; default 1.0 offline, 0.0 live.
    #[arg(long)]
    min_pass_rate: Option<f64>,
}

pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let mut scenarios = evals::load(&args.dir).map_err(anyhow::Error::msg)?;
    if let Some(f) = &args.filter {
        scenarios.retain(|s| s.name.contains(f.as_str()) || s.kind.contains(f.as_str()));
    }
    anyhow::ensure!(
        !scenarios.is_empty(),
        "no scenarios in {}",
        args.dir.display()
    );
    let live = match &args.provider {
        Some(name) => {
            let endpoint = Endpoint {
                url: args.endpoint.clone().unwrap_or_default(),
                key: ApiKey(args.api_key.clone().unwrap_or_default()),
                timeout: Duration::from_secs(120),
            };
            Some(
                providers::build(name, Some(endpoint), &reqwest::Client::new())
                    .map_err(anyhow::Error::msg)?,
            )
        }
        None => None,
    };
    let mut outcomes = Vec::new();
    for mut s in scenarios {
        if let (Some(model), Some(agent)) = (&args.model, s.agent.as_object_mut()) {
            agent.insert("model".into(), model.clone().into());
        }
        outcomes.push(evals::run(&s, live.as_deref()).await);
    }
    print!("{}", evals::report(&outcomes));
    let min = args
        .min_pass_rate
        .unwrap_or(if live.is_some() { 0.0 } else { 1.0 });
    let rate = evals::pass_rate(&outcomes);
    anyhow::ensure!(
        rate >= min,
        "the pass rate {:.0}% is below {:.0}%",
        rate * 100.0,
        min * 100.0
    );
    Ok(())
}
