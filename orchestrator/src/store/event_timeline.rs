//! An event's timeline as the API answers it: its rows, with the entries kept on the event's row
//! put in their place (ADR 0013 and its amendments).

use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_common::error::Result;
use switchyard_common::time::rfc3339;

use super::events::{Event, TimelineEntry};
use super::timeline_rows;
use crate::sources::Source;

/// A timeline entry as stored: when (ms), kind, detail.
pub(super) type Stored = (i64, String, Option<String>);

/// An event's timeline rows, in order.
async fn stored_timeline<'c, E>(db: E, id: &str) -> Result<Vec<Stored>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    Ok(sqlx::query_as(
        "SELECT at, kind, detail FROM or_event_timeline WHERE event_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(db)
    .await?)
}

/// The `routed`, `dispatch_attempt` and `dispatched` entries of an event whose run started, read
/// off its row (ADR 0013, second amendment), or `None` (not dispatched so, or dispatched before
/// the row kept them: those entries are rows).
fn folded_dispatch(r: &AnyRow) -> Result<Option<[Stored; 3]>> {
    let (Some(at), Some(by)) = (
        r.try_get::<Option<i64>, _>("dispatched_at")?,
        r.try_get::<Option<String>, _>("routed_by")?,
    ) else {
        return Ok(None);
    };
    let team: Option<String> = r.try_get("team_id")?;
    let run: Option<String> = r.try_get("run_id")?;
    let attempts: i64 = r.try_get("attempts")?;
    Ok(Some([
        (
            at,
            "routed".to_owned(),
            Some(format!("team {} ({by})", team.unwrap_or_default())),
        ),
        (
            at,
            "dispatch_attempt".to_owned(),
            Some(format!("attempt {attempts}")),
        ),
        (
            at,
            "dispatched".to_owned(),
            Some(format!("run {}", run.unwrap_or_default())),
        ),
    ]))
}

/// The timeline with the entries read off the row put where they happened: after everything
/// before the dispatch of the event's current generation (entries up to the last `replayed` are
/// earlier generations'), before the run's outcome (which its runner may date a moment before the
/// orchestrator dated the runner's acceptance) and anything later.
fn with_dispatch(mut rows: Vec<Stored>, fold: Option<&[Stored; 3]>) -> Vec<Stored> {
    let Some(entries) = fold else {
        return rows;
    };
    let at = entries[0].0;
    let generation = rows
        .iter()
        .rposition(|(_, kind, _)| kind == "replayed")
        .map_or(0, |i| i + 1);
    let place = rows[generation..]
        .iter()
        .position(|(t, kind, _)| kind.starts_with("run_") || *t > at)
        .map_or(rows.len(), |i| generation + i);
    rows.splice(place..place, entries.iter().cloned());
    rows
}

/// An event's timeline as the API answers it: its rows, with the entries read off the event's
/// `row` (which has `routed_by`, `dispatched_at`, `team_id`, `run_id`, `attempts` and
/// `platform`) in their place.
pub(super) async fn answered<'c, E>(
    db: E,
    event: &Event,
    row: &AnyRow,
) -> Result<Vec<TimelineEntry>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = stored_timeline(db, &event.id).await?;
    let mut timeline: Vec<TimelineEntry> = with_dispatch(rows, folded_dispatch(row)?.as_ref())
        .into_iter()
        .map(|(at, kind, detail)| TimelineEntry {
            at: rfc3339(at),
            kind,
            detail,
        })
        .collect();
    if !timeline.iter().any(|t| t.kind == "received") {
        let platform = row.try_get::<Option<i64>, _>("platform")? == Some(1);
        timeline.splice(0..0, arrival(event, platform));
    }
    Ok(timeline)
}

/// The `received` and `verified` timeline entries of an event, read off its row (ingest writes
/// neither: every event it stores was verified on arrival). `platform`: its integration is the
/// platform-wide one of its sender, whose path names no integration. Events stored before ingest
/// stopped writing them have them as rows, which are answered as they are.
fn arrival(event: &Event, platform: bool) -> [TimelineEntry; 2] {
    let path = Source::parse(&event.source)
        .map(|s| format!(" via {}", s.webhook_path(&event.integration_id, platform)));
    [
        TimelineEntry {
            at: event.received_at.clone(),
            kind: "received".into(),
            detail: Some(format!(
                "delivery {}{}",
                event.delivery_id,
                path.unwrap_or_default()
            )),
        },
        TimelineEntry {
            at: event.received_at.clone(),
            kind: "verified".into(),
            detail: None,
        },
    ]
}

/// Before a replay resets an event: its dispatch entries kept on the row become rows, in their
/// place (the event's timeline is written again, in order, when it has them).
pub(super) async fn write_out_dispatch(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
) -> Result<()> {
    let row = sqlx::query(
        "SELECT team_id, run_id, attempts, routed_by, dispatched_at FROM or_events WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let Some(fold) = folded_dispatch(&row)? else {
        return Ok(());
    };
    let rows = with_dispatch(stored_timeline(&mut **tx, id).await?, Some(&fold));
    sqlx::query("DELETE FROM or_event_timeline WHERE event_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let rows: Vec<_> = rows
        .iter()
        .map(|(at, kind, detail)| (id, *at, kind.as_str(), detail.as_deref()))
        .collect();
    for chunk in rows.chunks(100) {
        timeline_rows(tx, chunk).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: i64, kind: &str) -> Stored {
        (at, kind.to_owned(), None)
    }

    fn kinds(rows: &[Stored]) -> Vec<&str> {
        rows.iter().map(|(_, k, _)| k.as_str()).collect()
    }

    fn fold(at: i64) -> [Stored; 3] {
        [
            entry(at, "routed"),
            entry(at, "dispatch_attempt"),
            entry(at, "dispatched"),
        ]
    }

    #[test]
    fn the_dispatch_read_off_the_row_goes_where_it_happened() {
        // Nothing stored: the three entries alone.
        assert_eq!(
            kinds(&with_dispatch(vec![], Some(&fold(10)))),
            ["routed", "dispatch_attempt", "dispatched"]
        );
        // Nothing folded: the rows as they are.
        let rows = vec![entry(5, "dispatch_failed"), entry(9, "run_succeeded")];
        assert_eq!(kinds(&with_dispatch(rows.clone(), None)), kinds(&rows));
        // After a failed attempt, before the run's outcome even when the runner dated it a
        // moment before the orchestrator dated the acceptance.
        assert_eq!(
            kinds(&with_dispatch(rows, Some(&fold(10)))),
            [
                "dispatch_failed",
                "routed",
                "dispatch_attempt",
                "dispatched",
                "run_succeeded"
            ]
        );
        // A replayed event: the earlier generation's entries (its run's outcome among them)
        // come first, then this generation's, in time.
        let rows = vec![
            entry(1, "routed"),
            entry(1, "dispatch_attempt"),
            entry(1, "dispatched"),
            entry(2, "run_failed"),
            entry(3, "replayed"),
            entry(4, "throttled"),
            entry(30, "run_succeeded"),
        ];
        assert_eq!(
            kinds(&with_dispatch(rows, Some(&fold(20)))),
            [
                "routed",
                "dispatch_attempt",
                "dispatched",
                "run_failed",
                "replayed",
                "throttled",
                "routed",
                "dispatch_attempt",
                "dispatched",
                "run_succeeded"
            ]
        );
        // Something later than the dispatch that is not a run's outcome stays after it.
        let rows = vec![entry(3, "follow_up"), entry(40, "joined_run")];
        assert_eq!(
            kinds(&with_dispatch(rows, Some(&fold(20)))),
            [
                "follow_up",
                "routed",
                "dispatch_attempt",
                "dispatched",
                "joined_run"
            ]
        );
    }
}
