//! Storage: one implementation over [`sqlx::AnyPool`] with SQL both PostgreSQL and SQLite accept.
//!
//! Every write to an org happens in an [`OrgTx`]: a transaction that first locks the org's row
//! (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite has a single writer, which a process-wide mutex
//! stands for) and appends the audit entry for the change before committing, so the change and its
//! audit record land together and the org's audit hash chain never forks.

mod approvals;
mod audit;
mod config;
pub mod models;
mod orgs;
mod routing;
mod run_statements;
mod run_writes;
mod runs;
mod secrets;
mod tokens;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use switchyard_common::db::{Backend, Db, WriteTx};
use switchyard_common::time::{now_ms, rfc3339};
use tokio::sync::OwnedMutexGuard;

pub use approvals::PolicyWrite;
pub use audit::AuditQuery;
pub use config::{LayerWrite, layer_etag, parse_layer_etag};
pub use models::*;
pub use orgs::NodePatch;
pub use run_writes::RunWrites;
pub use runs::{NewRun, Recovered, RunQuery};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Store {
    /// The pool, and the process's SQLite write lock every write here takes (`Db::begin_write`).
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// Held around every write outside an [`OrgTx`].
    async fn write_guard(&self) -> Option<OwnedMutexGuard<()>> {
        self.db.write_guard().await
    }

    async fn begin(&self) -> Result<WriteTx> {
        Ok(self.db.begin_write().await?)
    }

    /// Starts a write to `org`: locks the org row and reads the head of its audit chain.
    /// Answers 404 when the org does not exist.
    async fn org_tx(&self, org: &str, actor: &Actor) -> Result<OrgTx> {
        let (guard, mut tx) = self.begin().await?;
        let lock = match self.db.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let sql = if org == PLATFORM_CHAIN {
            format!(
                "SELECT audit_seq, audit_head, '{{}}' AS policy FROM cs_audit_heads WHERE chain = $1{lock}"
            )
        } else {
            format!("SELECT audit_seq, audit_head, policy FROM cs_orgs WHERE id = $1{lock}")
        };
        let row = sqlx::query(&sql)
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("organisation {org}")))?;
        Ok(OrgTx {
            tx,
            _guard: guard,
            org: org.to_owned(),
            seq: row.try_get("audit_seq")?,
            head: row.try_get("audit_head")?,
            start_seq: row.try_get("audit_seq")?,
            policy: row.try_get("policy")?,
            actor: actor.clone(),
            source_id: None,
        })
    }
}

/// The audit chain of actions that belong to no organisation (the platform's shared integrations).
/// Org ids are slugs, which never start with `_`.
pub const PLATFORM_CHAIN: &str = "_platform";

/// A write transaction scoped to one org; see the module docs.
pub(crate) struct OrgTx {
    pub tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<()>>,
    pub org: String,
    seq: i64,
    head: String,
    start_seq: i64,
    /// The org's approval policy as stored (JSON text), read under the lock.
    pub policy: String,
    pub actor: Actor,
    /// The id of the relayed entry being appended (see `append_relayed`), kept for de-duplication.
    pub source_id: Option<String>,
}

impl OrgTx {
    /// Appends an audit entry to the org's hash chain, inside this transaction.
    pub async fn audit(
        &mut self,
        action: &str,
        target: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> Result<()> {
        let seq = self.seq + 1;
        let at = now_ms();
        let before = before.map(Value::to_string);
        let after = after.map(Value::to_string);
        let actor = self.actor.audit_name();
        let hash = entry_hash(&EntryFields {
            org: &self.org,
            seq,
            at,
            actor: &actor,
            action,
            target,
            before: before.as_deref(),
            after: after.as_deref(),
            request_id: self.actor.request_id.as_deref(),
            prev_hash: &self.head,
        });
        sqlx::query(
            "INSERT INTO cs_audit (org_id, seq, at, actor, action, target, before_state, after_state, request_id, prev_hash, hash, source_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&self.org)
        .bind(seq)
        .bind(at)
        .bind(&actor)
        .bind(action)
        .bind(target)
        .bind(before)
        .bind(after)
        .bind(self.actor.request_id.clone())
        .bind(&self.head)
        .bind(&hash)
        .bind(self.source_id.clone())
        .execute(&mut *self.tx)
        .await?;
        self.seq = seq;
        self.head = hash;
        Ok(())
    }

    /// Moves the org's chain head and commits.
    pub async fn commit(mut self) -> Result<()> {
        if self.seq != self.start_seq {
            let table = if self.org == PLATFORM_CHAIN {
                "UPDATE cs_audit_heads SET audit_seq = $1, audit_head = $2 WHERE chain = $3"
            } else {
                "UPDATE cs_orgs SET audit_seq = $1, audit_head = $2 WHERE id = $3"
            };
            sqlx::query(table)
                .bind(self.seq)
                .bind(&self.head)
                .bind(&self.org)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

/// The fields an audit hash covers.
pub(crate) struct EntryFields<'a> {
    pub org: &'a str,
    pub seq: i64,
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub prev_hash: &'a str,
}

/// SHA-256 over the previous hash and every field, each length-prefixed so that no two different
/// entries serialise the same way.
pub(crate) fn entry_hash(f: &EntryFields<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, v: Option<&str>| {
        h.update(name.as_bytes());
        match v {
            Some(v) => {
                h.update((v.len() as u64).to_be_bytes());
                h.update(v.as_bytes());
            }
            None => h.update([0xff]),
        }
    };
    field("prev", Some(f.prev_hash));
    field("org", Some(f.org));
    field("seq", Some(&f.seq.to_string()));
    field("at", Some(&f.at.to_string()));
    field("actor", Some(f.actor));
    field("action", Some(f.action));
    field("target", Some(f.target));
    field("before", f.before);
    field("after", f.after);
    field("request", f.request_id);
    hex::encode(h.finalize())
}

pub(crate) fn ts(row: &AnyRow, col: &str) -> Result<String> {
    Ok(rfc3339(row.try_get::<i64, _>(col)?))
}

pub(crate) fn opt_ts(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(rfc3339))
}

pub(crate) fn json_col(row: &AnyRow, col: &str) -> Result<Value> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s)
        .map_err(|e| Error::Internal(anyhow::anyhow!("corrupt JSON in {col}: {e}")))
}

pub(crate) fn opt_json_col(row: &AnyRow, col: &str) -> Result<Option<Value>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| {
        serde_json::from_str(&s)
            .map_err(|e| Error::Internal(anyhow::anyhow!("corrupt JSON in {col}: {e}")))
    })
    .transpose()
}

/// A value to bind in a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// A `WHERE` clause built from optional filters, with `$n` placeholders numbered in order.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    pub args: Vec<Arg>,
}

impl Filter {
    /// Adds `clause`, in which `$?` stands for this argument's placeholder.
    pub fn push(&mut self, clause: &str, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.clauses
            .push(clause.replace("$?", &format!("${}", self.args.len())));
        self
    }

    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "TRUE".into()
        } else {
            self.clauses.join(" AND ")
        }
    }

    pub fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// Clamps a page size to 1..=max (default when absent).
pub(crate) fn page_limit(limit: Option<u32>, default: u32, max: u32) -> i64 {
    limit.unwrap_or(default).clamp(1, max) as i64
}
