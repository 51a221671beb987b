//! Posting results back where the event came from.

use serde_json::{Value, json};

use crate::AppState;

/// The credential at `pointer`: config holds a reference (`{"secret": "<name>"}`) that the org
/// secrets store resolves; a literal is refused (the config-service no longer accepts them, and
/// one left from before must be moved to the store).
async fn secret(
    state: &AppState,
    org: &str,
    config: &Value,
    pointer: &str,
    what: &str,
) -> Result<String, String> {
    let at = format!(
        "integrations{}",
        pointer.trim_start_matches("/integrations")
    );
    let v = config
        .pointer(pointer)
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("no {what} configured at {at}"))?;
    let Some(name) = v.get("secret").and_then(Value::as_str) else {
        return Err(format!(
            "{at} must refer to the org secrets store as {{\"secret\": \"<name>\"}}"
        ));
    };
    org_secret(state, org, name, &at).await
}

/// The value of the org's secret `name`, which `at` (a config path, for the error) refers to.
pub async fn org_secret(
    state: &AppState,
    org: &str,
    name: &str,
    at: &str,
) -> Result<String, String> {
    state
        .config
        .org_secret(org, name)
        .await
        .map_err(|e| format!("reading secret {name}: {e}"))?
        .ok_or_else(|| format!("{at} refers to secret {name}, which the org does not have"))
}

/// Posts `text` to `target`: Slack `chat.postMessage` in the thread, or a GitHub issue comment.
pub async fn post(
    state: &AppState,
    org: &str,
    config: &Value,
    target: &Value,
    text: &str,
) -> Result<(), String> {
    match target.get("kind").and_then(Value::as_str) {
        Some("slack") => {
            let token = secret(
                state,
                org,
                config,
                "/integrations/slack/bot_token",
                "Slack bot token",
            )
            .await?;
            let mut body = json!({"channel": target["channel"], "text": text});
            if let Some(ts) = target.get("thread_ts").filter(|v| !v.is_null()) {
                body["thread_ts"] = ts.clone();
            }
            let resp = state
                .http
                .post(format!(
                    "{}/chat.postMessage",
                    state.replies.slack_api_base.trim_end_matches('/')
                ))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("Slack: {e}"))?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() || v["ok"] != json!(true) {
                return Err(format!(
                    "Slack chat.postMessage failed: {status} {}",
                    v["error"].as_str().unwrap_or("")
                ));
            }
            Ok(())
        }
        Some("github") => {
            let token = secret(
                state,
                org,
                config,
                "/integrations/github/token",
                "GitHub token",
            )
            .await?;
            let repo = target["repo"]
                .as_str()
                .ok_or("the GitHub reply target has no repo")?;
            let number = target["issue_number"]
                .as_i64()
                .ok_or("the GitHub reply target has no issue_number")?;
            let resp = state
                .http
                .post(format!(
                    "{}/repos/{repo}/issues/{number}/comments",
                    state.replies.github_api_base.trim_end_matches('/')
                ))
                .bearer_auth(token)
                .header("accept", "application/vnd.github+json")
                .header("user-agent", "switchyard")
                .json(&json!({"body": text}))
                .send()
                .await
                .map_err(|e| format!("GitHub: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("GitHub comment failed: {}", resp.status()));
            }
            Ok(())
        }
        other => Err(format!("unknown reply target kind {other:?}")),
    }
}
