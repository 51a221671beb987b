//! The store conformance suite: every store operation, run against PostgreSQL (the real local
//! server, a fresh database per test) and SQLite (a fresh file per test). Test names start with
//! `postgres::` or `sqlite::`, so the runner's summary shows how many ran on each.

use serde_json::json;
use switchyard_common::db::Backend;
use switchyard_common::db::testing::TestDb;
use switchyard_config_service::domain::routing::RouteKind;
use switchyard_config_service::error::Error;
use switchyard_config_service::store::*;

async fn store(backend: Backend) -> (TestDb, Store) {
    let db = TestDb::new(backend).await.expect("create test database");
    let conn = db.connect().await.expect("connect and migrate");
    (db, Store::new(conn))
}

fn admin() -> Actor {
    Actor::system("platform-admin")
}

fn alice() -> Actor {
    Actor::system("org-admin:alice")
}

fn bob() -> Actor {
    Actor::system("org-admin:bob")
}

/// An org `acme` with group `payments` and teams `checkout` (under payments) and `search`.
async fn seeded(backend: Backend) -> (TestDb, Store) {
    let (db, s) = store(backend).await;
    s.create_org(&admin(), "acme", "Acme").await.unwrap();
    s.create_node(&admin(), "acme", "payments", None, "group", "Payments")
        .await
        .unwrap();
    s.create_node(
        &admin(),
        "acme",
        "checkout",
        Some("payments"),
        "team",
        "Checkout",
    )
    .await
    .unwrap();
    s.create_node(&admin(), "acme", "search", None, "team", "Search")
        .await
        .unwrap();
    (db, s)
}

fn applied(w: LayerWrite) -> LayerVersion {
    match w {
        LayerWrite::Applied(v) => v,
        LayerWrite::Pending(c) => panic!("expected applied, got pending change {}", c.id),
    }
}

async fn orgs_are_unique_and_listed(b: Backend) {
    let (_db, s) = store(b).await;
    let org = s.create_org(&admin(), "acme", "Acme").await.unwrap();
    assert_eq!(org.id, "acme");
    let err = s.create_org(&admin(), "acme", "Again").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                code: "org-exists",
                ..
            }
        ),
        "{err:?}"
    );
    s.create_org(&admin(), "beta", "Beta").await.unwrap();
    let all = s.list_orgs(None).await.unwrap();
    assert_eq!(
        all.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["acme", "beta"]
    );
    assert_eq!(s.list_orgs(Some("beta")).await.unwrap().len(), 1);
    assert!(s.get_org("nope").await.unwrap().is_none());
}

async fn node_tree_moves_and_deletes(b: Backend) {
    let (_db, s) = seeded(b).await;
    let tree = s.node_tree("acme").await.unwrap();
    assert_eq!(tree.node.kind, "org");
    let ids: Vec<&str> = tree.children.iter().map(|c| c.node.id.as_str()).collect();
    assert_eq!(ids, ["payments", "search"]);
    assert_eq!(tree.children[0].children[0].node.id, "checkout");

    // Duplicate id, missing parent, team as parent.
    let e = s
        .create_node(&admin(), "acme", "search", None, "team", "x")
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Conflict {
            code: "node-exists",
            ..
        }
    ));
    let e = s
        .create_node(&admin(), "acme", "x", Some("nope"), "team", "x")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Validation(ref v) if v[0].pointer == "/parent_id"));
    let e = s
        .create_node(&admin(), "acme", "x", Some("search"), "team", "x")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Validation(_)));

    // Move checkout to the root, then refuse a cycle.
    s.create_node(
        &admin(),
        "acme",
        "inner",
        Some("payments"),
        "group",
        "Inner",
    )
    .await
    .unwrap();
    let moved = s
        .update_node(
            &admin(),
            "acme",
            "checkout",
            NodePatch {
                name: Some("Checkout!".into()),
                parent_id: Some("acme".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.parent_id.as_deref(), Some("acme"));
    assert_eq!(moved.name, "Checkout!");
    let e = s
        .update_node(
            &admin(),
            "acme",
            "payments",
            NodePatch {
                name: None,
                parent_id: Some("inner".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Validation(ref v) if v[0].detail.contains("cycle")),
        "{e:?}"
    );

    // Delete refuses a node with children, then works bottom-up.
    let e = s
        .delete_node(&admin(), "acme", "payments")
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Conflict {
            code: "node-has-children",
            ..
        }
    ));
    s.put_layer(
        &admin(),
        "acme",
        "inner",
        Some(0),
        json!({"agent": {"model": "a"}}),
        None,
    )
    .await
    .unwrap();
    s.put_layer(
        &admin(),
        "acme",
        "inner",
        Some(1),
        json!({"agent": {"model": "b"}}),
        None,
    )
    .await
    .unwrap();
    s.delete_node(&admin(), "acme", "inner").await.unwrap();
    // Archived with its whole history, and the id is free again.
    let archived = s.archived_nodes("acme").await.unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!(
        (
            archived[0].node_id.as_str(),
            archived[0].node["kind"].as_str()
        ),
        ("inner", Some("group"))
    );
    let versions = archived[0].versions.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["layer"], json!({"agent": {"model": "b"}}));
    s.create_node(
        &admin(),
        "acme",
        "inner",
        Some("payments"),
        "group",
        "Inner again",
    )
    .await
    .unwrap();
    s.delete_node(&admin(), "acme", "inner").await.unwrap();
    s.delete_node(&admin(), "acme", "payments").await.unwrap();
    assert!(s.get_node("acme", "payments").await.unwrap().is_none());
    let e = s.delete_node(&admin(), "acme", "acme").await.unwrap_err();
    assert!(matches!(
        e,
        Error::Conflict {
            code: "root-node",
            ..
        }
    ));
    assert!(matches!(
        s.delete_node(&admin(), "zzz", "x").await.unwrap_err(),
        Error::NotFound(_)
    ));
}

async fn layers_merge_version_and_guard(b: Backend) {
    let (_db, s) = seeded(b).await;
    applied(
        s.put_layer(
            &admin(),
            "acme",
            "acme",
            Some(0),
            json!({"agent": {"model": "m1", "tools": ["a"]}}),
            None,
        )
        .await
        .unwrap(),
    );
    applied(
        s.put_layer(
            &admin(),
            "acme",
            "payments",
            Some(0),
            json!({"agent": {"tools": ["b"]}, "quotas": {"concurrent_runs": 2}}),
            None,
        )
        .await
        .unwrap(),
    );
    let v = applied(
        s.put_layer(
            &admin(),
            "acme",
            "checkout",
            Some(0),
            json!({"agent": {"model": "m2"}, "quotas": null}),
            Some("first".into()),
        )
        .await
        .unwrap(),
    );
    assert_eq!(v.version, 1);

    let e = s.effective_config("acme", "checkout", true).await.unwrap();
    assert_eq!(e.config, json!({"agent": {"model": "m2", "tools": ["b"]}}));
    let explain = e.explain.unwrap();
    assert_eq!(explain["/agent/model"], "checkout");
    assert_eq!(explain["/agent/tools"], "payments");
    assert_eq!(
        e.chain
            .iter()
            .map(|c| c.node_id.as_str())
            .collect::<Vec<_>>(),
        ["acme", "payments", "checkout"]
    );

    // A stale version is refused; the right one writes version 2.
    let stale = s
        .put_layer(&admin(), "acme", "checkout", Some(0), json!({}), None)
        .await
        .unwrap_err();
    assert!(matches!(stale, Error::PreconditionFailed(_)));
    let etag_before = e.etag.clone();
    applied(
        s.put_layer(
            &admin(),
            "acme",
            "checkout",
            Some(1),
            json!({"agent": {"model": "m3"}}),
            None,
        )
        .await
        .unwrap(),
    );
    let e2 = s.effective_config("acme", "checkout", false).await.unwrap();
    assert_ne!(e2.etag, etag_before);
    assert!(e2.explain.is_none());
    assert_eq!(s.get_layer("acme", "checkout").await.unwrap().version, 2);
    assert_eq!(s.get_layer("acme", "search").await.unwrap().version, 0);

    // History newest first with diffs; rollback writes version 3 equal to version 1.
    let h = s.config_history("acme", "checkout").await.unwrap();
    assert_eq!(h.iter().map(|e| e.version).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(h[0].diff[0].path, "/agent/model");
    assert_eq!(h[1].message.as_deref(), Some("first"));
    let v3 = applied(
        s.rollback_layer(&admin(), "acme", "checkout", 1, None)
            .await
            .unwrap(),
    );
    assert_eq!(v3.version, 3);
    assert_eq!(
        s.get_layer("acme", "checkout").await.unwrap().layer,
        json!({"agent": {"model": "m2"}, "quotas": null})
    );
    assert!(matches!(
        s.rollback_layer(&admin(), "acme", "checkout", 42, None)
            .await
            .unwrap_err(),
        Error::Validation(_)
    ));
    assert!(matches!(
        s.effective_config("acme", "nope", false).await.unwrap_err(),
        Error::NotFound(_)
    ));
}

async fn approvals_need_a_second_admin(b: Backend) {
    let (_db, s) = seeded(b).await;
    s.put_policy(
        &alice(),
        "acme",
        &Policy {
            protected_paths: vec!["/agent/prompts".into()],
        },
    )
    .await
    .unwrap();
    applied(
        s.put_layer(
            &alice(),
            "acme",
            "search",
            Some(0),
            json!({"agent": {"model": "m"}}),
            None,
        )
        .await
        .unwrap(),
    );
    let pending = match s
        .put_layer(
            &alice(),
            "acme",
            "search",
            Some(1),
            json!({"agent": {"model": "m", "prompts": {"system": "be brief"}}}),
            None,
        )
        .await
        .unwrap()
    {
        LayerWrite::Pending(c) => c,
        LayerWrite::Applied(_) => panic!("protected change applied without approval"),
    };
    assert_eq!(pending.touched, ["/agent/prompts"]);
    assert_eq!(s.get_layer("acme", "search").await.unwrap().version, 1);
    assert_eq!(
        s.list_changes("acme", Some("pending")).await.unwrap().len(),
        1
    );

    let e = s
        .decide_change(&alice(), "acme", &pending.id, true, None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Forbidden(_)), "{e:?}");
    let decided = s
        .decide_change(&bob(), "acme", &pending.id, true, None)
        .await
        .unwrap();
    assert_eq!(decided.status, "approved");
    let layer = s.get_layer("acme", "search").await.unwrap();
    assert_eq!(layer.version, 2);
    assert_eq!(layer.author.as_deref(), Some("org-admin:alice"));
    assert_eq!(layer.approved_by.as_deref(), Some("org-admin:bob"));
    let e = s
        .decide_change(&bob(), "acme", &pending.id, false, None)
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Conflict {
            code: "change-decided",
            ..
        }
    ));

    // A change whose base moved on is stale; rejecting it works.
    let c2 = match s
        .put_layer(
            &alice(),
            "acme",
            "search",
            Some(2),
            json!({"agent": {"model": "m", "prompts": {}}}),
            None,
        )
        .await
        .unwrap()
    {
        LayerWrite::Pending(c) => c,
        _ => panic!("expected pending"),
    };
    applied(
        s.put_layer(
            &bob(),
            "acme",
            "search",
            Some(2),
            json!({"agent": {"model": "n", "prompts": {"system": "be brief"}}}),
            None,
        )
        .await
        .unwrap(),
    );
    let e = s
        .decide_change(&bob(), "acme", &c2.id, true, None)
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::Conflict {
            code: "change-stale",
            ..
        }
    ));
    assert_eq!(
        s.decide_change(&alice(), "acme", &c2.id, false, Some("withdrawn".into()))
            .await
            .unwrap()
            .status,
        "rejected"
    );
}

async fn routing_is_unique_per_org_and_looks_up_by_precedence(b: Backend) {
    let (_db, s) = seeded(b).await;
    s.create_org(&admin(), "beta", "Beta").await.unwrap();
    s.create_node(&admin(), "beta", "ops", None, "team", "Ops")
        .await
        .unwrap();
    applied(
        s.put_layer(
            &admin(),
            "acme",
            "acme",
            Some(0),
            json!({"routing": {"slack_team": "T1", "github_owner": "Acme"}}),
            None,
        )
        .await
        .unwrap(),
    );
    applied(s.put_layer(&admin(), "acme", "checkout", Some(0), json!({"routing": {"github_repo": "acme/checkout", "slack_channel": ["C1", "C2"], "service": "checkout-api"}}), None).await.unwrap());
    applied(
        s.put_layer(
            &admin(),
            "acme",
            "search",
            Some(0),
            json!({"routing": {"alert_label": "team=search", "service": "search-api"}}),
            None,
        )
        .await
        .unwrap(),
    );
    applied(
        s.put_layer(
            &admin(),
            "beta",
            "ops",
            Some(0),
            json!({"routing": {"slack_channel": "C1", "service": "checkout-api"}}),
            None,
        )
        .await
        .unwrap(),
    );

    // Conflict inside one org names the owner and changes nothing.
    let e = s
        .put_layer(
            &admin(),
            "acme",
            "search",
            Some(1),
            json!({"routing": {"slack_channel": "C2"}}),
            None,
        )
        .await
        .unwrap_err();
    match e {
        Error::Conflict {
            code,
            extensions,
            detail,
        } => {
            assert_eq!(code, "routing-conflict");
            assert_eq!(extensions["owner"], "checkout");
            assert!(detail.contains("checkout"));
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(s.get_layer("acme", "search").await.unwrap().version, 1);
    assert_eq!(
        s.list_routes("acme", Some("slack_channel"), None)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.list_routes("acme", None, Some("team=search"))
            .await
            .unwrap()[0]
            .node_id,
        "search"
    );

    let ids = |v: &[(RouteKind, &str)]| {
        v.iter()
            .map(|(k, s)| (*k, s.to_string()))
            .collect::<Vec<_>>()
    };
    let matched = |l: Lookup| match l {
        Lookup::Matched(m) => m,
        other => panic!("expected a match, got {other:?}"),
    };
    // The repo beats the channel within the org.
    let m = matched(
        s.lookup_route(
            Some("acme"),
            &ids(&[
                (RouteKind::SlackChannel, "C2"),
                (RouteKind::GithubRepo, "acme/checkout"),
            ]),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        (m.team_node_id.as_str(), m.matched_by.as_str()),
        ("checkout", "github_repo")
    );
    // Without org_id, the workspace's org routes by its more specific channel.
    let m = matched(
        s.lookup_route(
            None,
            &ids(&[
                (RouteKind::SlackTeam, "T1"),
                (RouteKind::SlackChannel, "C2"),
            ]),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        (
            m.org_id.as_str(),
            m.team_node_id.as_str(),
            m.matched_by.as_str()
        ),
        ("acme", "checkout", "slack_channel")
    );
    // C1 is claimed in both orgs: never resolved in favour of either, not even of the org that
    // holds the workspace.
    let e = s
        .lookup_route(
            None,
            &ids(&[
                (RouteKind::SlackTeam, "T1"),
                (RouteKind::SlackChannel, "C1"),
            ]),
        )
        .await
        .unwrap();
    assert!(
        matches!(&e, Lookup::Ambiguous(why) if why.contains("acme") && why.contains("beta")),
        "{e:?}"
    );
    let e = s
        .lookup_route(None, &ids(&[(RouteKind::Service, "checkout-api")]))
        .await
        .unwrap();
    assert!(matches!(e, Lookup::Ambiguous(_)), "{e:?}");
    // A channel claimed by an org without the workspace assigned to it routes nothing without
    // org_id: only the platform admin's assignment says which tenant a shared-app event is for.
    let e = s
        .lookup_route(None, &ids(&[(RouteKind::SlackChannel, "C2")]))
        .await
        .unwrap();
    assert!(
        matches!(&e, Lookup::Unrouted(why) if why.contains("slack_team")),
        "{e:?}"
    );
    let m = matched(
        s.lookup_route(Some("beta"), &ids(&[(RouteKind::Service, "checkout-api")]))
            .await
            .unwrap(),
    );
    assert_eq!(m.team_node_id, "ops");
    assert!(matches!(
        s.lookup_route(None, &ids(&[(RouteKind::Service, "nobody")]))
            .await
            .unwrap(),
        Lookup::Unrouted(_)
    ));
    // Only an org-level identifier: the org's root owns it.
    let m = matched(
        s.lookup_route(None, &ids(&[(RouteKind::GithubOwner, "acme")]))
            .await
            .unwrap(),
    );
    assert_eq!(
        (m.team_node_id.as_str(), m.node_kind.as_str()),
        ("acme", "org")
    );

    // Deleting a node frees its identifiers.
    s.delete_node(&admin(), "acme", "search").await.unwrap();
    assert!(matches!(
        s.lookup_route(
            Some("acme"),
            &ids(&[(RouteKind::AlertLabel, "team=search")])
        )
        .await
        .unwrap(),
        Lookup::Unrouted(_)
    ));
}

/// The shared-app attack: an org admin claiming another tenant's Slack workspace or GitHub
/// account. Only the platform admin assigns them, each to one org at most.
async fn org_level_identifiers_are_assigned_by_the_platform_admin(b: Backend) {
    let (_db, s) = seeded(b).await;
    s.create_org(&admin(), "evil", "Evil").await.unwrap();
    s.create_node(&admin(), "evil", "ops", None, "team", "Ops")
        .await
        .unwrap();
    applied(
        s.put_layer(
            &admin(),
            "acme",
            "acme",
            Some(0),
            json!({"routing": {"slack_team": "T1"}}),
            None,
        )
        .await
        .unwrap(),
    );
    // The victim's team routes by channel only (as most teams do).
    applied(
        s.put_layer(
            &admin(),
            "acme",
            "checkout",
            Some(0),
            json!({"routing": {"slack_channel": "C9"}}),
            None,
        )
        .await
        .unwrap(),
    );
    let evil = Actor::system("org-admin:evil-token");
    for layer in [
        json!({"routing": {"slack_team": "T1"}}),
        json!({"routing": {"slack_team": "T-unassigned"}}),
        json!({"routing": {"github_owner": "acme"}}),
    ] {
        let e = s
            .put_layer(&evil, "evil", "evil", Some(0), layer.clone(), None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{layer}: {e:?}");
    }
    // Even the platform admin cannot give one workspace to two orgs: 409, other org unnamed.
    let e = s
        .put_layer(
            &admin(),
            "evil",
            "evil",
            Some(0),
            json!({"routing": {"slack_team": "T1"}}),
            None,
        )
        .await
        .unwrap_err();
    match e {
        Error::Conflict {
            code,
            detail,
            extensions,
        } => {
            assert_eq!(code, "routing-conflict");
            assert!(
                detail.contains("another organisation") && !detail.contains("acme"),
                "{detail}"
            );
            assert!(extensions.get("owner").is_none());
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Claiming the victim's channel gets the attacker nothing: the event is unrouted.
    applied(
        s.put_layer(
            &evil,
            "evil",
            "ops",
            Some(0),
            json!({"routing": {"slack_channel": "C9"}}),
            None,
        )
        .await
        .unwrap(),
    );
    let found = s
        .lookup_route(
            None,
            &[
                (RouteKind::SlackTeam, "T1".to_owned()),
                (RouteKind::SlackChannel, "C9".to_owned()),
            ],
        )
        .await
        .unwrap();
    assert!(matches!(found, Lookup::Ambiguous(_)), "{found:?}");
    // An org admin may keep (and edit around) an assigned identifier, and release it.
    let alice = alice();
    applied(
        s.put_layer(
            &alice,
            "acme",
            "acme",
            Some(1),
            json!({"routing": {"slack_team": "T1"}, "quotas": {"concurrent_runs": 2}}),
            None,
        )
        .await
        .unwrap(),
    );
    applied(
        s.put_layer(&alice, "acme", "acme", Some(2), json!({}), None)
            .await
            .unwrap(),
    );
    assert!(
        s.list_routes("acme", Some("slack_team"), None)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn tokens_hash_expire_and_revoke(b: Backend) {
    let (_db, s) = seeded(b).await;
    let t = s
        .create_token(&admin(), "acme", Some("checkout"), "ci", None, None)
        .await
        .unwrap();
    assert!(t.secret.starts_with("syt_"));
    let auth = s
        .authenticate(&switchyard_common::auth::hash_token(&t.secret))
        .await
        .unwrap();
    assert_eq!(
        (
            auth.org_id.as_str(),
            auth.node_id.as_deref(),
            auth.kind.as_str()
        ),
        ("acme", Some("checkout"), "team")
    );
    let listed = s.list_tokens("acme", Some("checkout")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_at.is_some());
    assert!(!serde_json::to_string(&listed).unwrap().contains(&t.secret));

    let a = s
        .create_token(
            &admin(),
            "acme",
            None,
            "alice",
            Some("alice@acme.example"),
            None,
        )
        .await
        .unwrap();
    assert!(a.secret.starts_with("syo_"));
    assert_eq!(s.list_tokens("acme", None).await.unwrap().len(), 1);
    // Wrong scope is not found; right scope revokes; revoking twice is fine.
    assert!(matches!(
        s.revoke_token(&admin(), "acme", Some("checkout"), &a.info.id)
            .await
            .unwrap_err(),
        Error::NotFound(_)
    ));
    let r = s
        .revoke_token(&admin(), "acme", None, &a.info.id)
        .await
        .unwrap();
    assert!(r.revoked_at.is_some());
    s.revoke_token(&admin(), "acme", None, &a.info.id)
        .await
        .unwrap();
    let e = s
        .authenticate(&switchyard_common::auth::hash_token(&a.secret))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized(ref m) if m.contains("revoked")));

    let expired = s
        .create_token(&admin(), "acme", Some("search"), "old", None, Some(1))
        .await
        .unwrap();
    let e = s
        .authenticate(&switchyard_common::auth::hash_token(&expired.secret))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized(ref m) if m.contains("expired")));
    assert!(matches!(
        s.authenticate("0000").await.unwrap_err(),
        Error::Unauthorized(_)
    ));
    assert!(matches!(
        s.create_token(&admin(), "acme", Some("nope"), "x", None, None)
            .await
            .unwrap_err(),
        Error::NotFound(_)
    ));

    // Deleting a node revokes its tokens.
    s.delete_node(&admin(), "acme", "checkout").await.unwrap();
    assert!(
        s.authenticate(&switchyard_common::auth::hash_token(&t.secret))
            .await
            .is_err()
    );
}

async fn audit_is_chained_filterable_and_tamper_evident(b: Backend) {
    let (_db, s) = seeded(b).await;
    applied(
        s.put_layer(
            &alice(),
            "acme",
            "search",
            Some(0),
            json!({"agent": {"model": "m"}}),
            None,
        )
        .await
        .unwrap(),
    );
    let all = s.list_audit("acme", &AuditQuery::default()).await.unwrap();
    let actions: Vec<&str> = all.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "config.layer_updated",
            "node.created",
            "node.created",
            "node.created",
            "org.created"
        ]
    );
    assert_eq!(all.items[0].after, Some(json!({"agent": {"model": "m"}})));
    assert_eq!(all.items[1].prev_hash, all.items[2].hash);

    let by_alice = s
        .list_audit(
            "acme",
            &AuditQuery {
                actor: Some("org-admin:alice".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_alice.items.len(), 1);
    let by_target = s
        .list_audit(
            "acme",
            &AuditQuery {
                target: Some("node/checkout".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_target.items[0].action, "node.created");
    let page1 = s
        .list_audit(
            "acme",
            &AuditQuery {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page1.items.len(), 2);
    let page2 = s
        .list_audit(
            "acme",
            &AuditQuery {
                limit: Some(2),
                cursor: page1.next_cursor.as_deref().map(|c| c.parse().unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page2.items[0].seq, page1.items[1].seq - 1);
    let future = s
        .list_audit(
            "acme",
            &AuditQuery {
                since: Some(i64::MAX / 2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(future.items.is_empty());

    assert!(s.verify_audit("acme").await.unwrap().ok);
    // Tamper with an entry: detected at that entry.
    sqlx::query("UPDATE cs_audit SET actor = 'someone-else' WHERE org_id = 'acme' AND seq = 3")
        .execute(&s.db().pool)
        .await
        .unwrap();
    let v = s.verify_audit("acme").await.unwrap();
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(3));
    assert!(v.problem.unwrap().contains("modified"));
}

async fn audit_detects_deleted_entries(b: Backend) {
    let (_db, s) = seeded(b).await;
    sqlx::query("DELETE FROM cs_audit WHERE org_id = 'acme' AND seq = 2")
        .execute(&s.db().pool)
        .await
        .unwrap();
    let v = s.verify_audit("acme").await.unwrap();
    assert_eq!((v.ok, v.first_bad_seq), (false, Some(2)));
    let (_db2, s2) = seeded(b).await;
    sqlx::query("DELETE FROM cs_audit WHERE org_id = 'acme' AND seq = 4")
        .execute(&s2.db().pool)
        .await
        .unwrap();
    let v = s2.verify_audit("acme").await.unwrap();
    assert!(!v.ok);
    assert!(v.problem.unwrap().contains("removed"));
}

async fn agent_runs_are_idempotent_and_move_forward(b: Backend) {
    let (_db, s) = seeded(b).await;
    let trigger = json!({"source": "slack", "event_id": "Ev1"});
    let (r, created) = s
        .create_run(&NewRun {
            org: "acme",
            team: "checkout",
            trigger: &trigger,
            idempotency_key: Some("evt-1"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(created);
    assert_eq!(r.status, "queued");
    let (again, created) = s
        .create_run(&NewRun {
            org: "acme",
            team: "checkout",
            trigger: &trigger,
            idempotency_key: Some("evt-1"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, r.id);
    // A runner that starts its run at once records it running, with the config it runs with.
    let (started, _) = s
        .create_run(&NewRun {
            org: "acme",
            team: "checkout",
            trigger: &trigger,
            idempotency_key: Some("evt-2"),
            runner: Some("runner-a"),
            lease_ms: 60_000,
            running: true,
            config_etag: Some("\"e-1\""),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (started.status.as_str(), started.config_etag.as_deref()),
        ("running", Some("\"e-1\""))
    );
    assert!(started.started_at.is_some());
    assert!(matches!(
        s.create_run(&NewRun {
            org: "acme",
            team: "nope",
            trigger: &trigger,
            ..Default::default()
        })
        .await
        .unwrap_err(),
        Error::Validation(_)
    ));

    let running = s.update_run(&r.id, "running", None, None).await.unwrap();
    assert!(running.started_at.is_some());
    let e = s.update_run(&r.id, "queued", None, None).await.unwrap_err();
    assert!(matches!(
        e,
        Error::Conflict {
            code: "invalid-transition",
            ..
        }
    ));
    // Usage recorded with a run adds to the day's counters of its team and its org, once.
    let midnight = {
        let now = switchyard_common::time::now_ms();
        now - now.rem_euclid(86_400_000)
    };
    let usage = |i, o| switchyard_api::runs::RunUsage {
        input_tokens: i,
        output_tokens: o,
    };
    let mut u = switchyard_api::runs::UpdateRun::to("succeeded");
    u.summary = Some("posted a summary".into());
    u.usage = Some(usage(40, 9));
    let done = s.record_run(&r.id, &u).await.unwrap();
    assert_eq!(
        (done.status.as_str(), done.summary.as_deref()),
        ("succeeded", Some("posted a summary"))
    );
    assert!(done.finished_at.is_some());
    assert_eq!(done.usage, usage(40, 9));
    assert_eq!(
        s.tokens_used("acme", Some("checkout"), midnight)
            .await
            .unwrap(),
        49
    );
    assert_eq!(s.tokens_used("acme", None, midnight).await.unwrap(), 49);
    assert_eq!(
        s.tokens_used("acme", Some("search"), midnight)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.tokens_used("acme", None, midnight - 86_400_000)
            .await
            .unwrap(),
        0
    );

    for i in 0..4 {
        s.create_run(&NewRun {
            org: "acme",
            team: "search",
            trigger: &json!({"n": i}),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let page = s
        .list_runs(
            "acme",
            &RunQuery {
                team: Some("search".into()),
                limit: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    let rest = s
        .list_runs(
            "acme",
            &RunQuery {
                team: Some("search".into()),
                cursor: page.next_cursor.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next_cursor.is_none());
    assert_eq!(rest.items[0].trigger, json!({"n": 0}));
    let succeeded = s
        .list_runs(
            "acme",
            &RunQuery {
                status: Some("succeeded".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(succeeded.items.len(), 1);
    assert!(matches!(
        s.get_run(Some("beta"), &r.id).await.unwrap_err(),
        Error::NotFound(_)
    ));
}

async fn concurrent_writes_keep_one_chain(b: Backend) {
    let (_db, s) = seeded(b).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_node(&admin(), "acme", &format!("t{i}"), None, "team", "T")
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = s.verify_audit("acme").await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.entries, 4 + 16);
}

/// A run whose runner died is resumed by another (bounded attempts), failed past its deadline,
/// and a runner that lost its lease cannot renew it.
async fn runs_hold_leases_and_are_recovered(b: Backend) {
    let (_db, s) = seeded(b).await;
    let trigger = json!({"source": "pagerduty"});
    let reply = json!({"kind": "slack", "channel": "C1"});
    let leased = |key: &'static str, lease_ms: i64, deadline_ms: Option<i64>| NewRun {
        org: "acme",
        team: "checkout",
        trigger: &trigger,
        idempotency_key: Some(key),
        reply_to: Some(&reply),
        runner: Some("runner-a"),
        lease_ms,
        deadline_ms,
        running: false,
        config_etag: None,
    };
    let (alive, _) = s.create_run(&leased("alive", 60_000, None)).await.unwrap();
    let (dead, _) = s.create_run(&leased("dead", -1, None)).await.unwrap();
    let (late, _) = s
        .create_run(&leased("late", 60_000, Some(-1)))
        .await
        .unwrap();
    assert_eq!(
        (dead.attempts, dead.lease_owner.as_deref()),
        (1, Some("runner-a"))
    );
    s.update_run(&dead.id, "running", None, None).await.unwrap();

    let r = s.recover_runs("runner-b", 60_000, 2, 10).await.unwrap();
    let resumed: Vec<&str> = r.resumed.iter().map(|r| r.id.as_str()).collect();
    let failed: Vec<&str> = r.failed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        resumed,
        [dead.id.as_str()],
        "only the lapsed lease is resumed"
    );
    assert_eq!(
        failed,
        [late.id.as_str()],
        "the run past its deadline is failed"
    );
    let again = &r.resumed[0];
    assert_eq!(
        (
            again.status.as_str(),
            again.attempts,
            again.lease_owner.as_deref()
        ),
        ("running", 2, Some("runner-b")),
        "a resumed run is running again: its new runner executes it at once"
    );
    assert!(again.started_at.is_some());
    assert_eq!(
        again.reply_to,
        Some(reply.clone()),
        "a resumed run still replies"
    );
    assert!(r.failed[0].error.as_deref().unwrap().contains("deadline"));
    // The runner that lost it cannot renew; the new holder can, and an alive run is untouched.
    assert!(
        !s.renew_run_lease(&dead.id, "runner-a", 60_000)
            .await
            .unwrap()
    );
    assert!(s.renew_run_lease(&dead.id, "runner-b", -1).await.unwrap());
    assert_eq!(s.get_run(None, &alive.id).await.unwrap().status, "queued");
    // Its second runner dies too: out of attempts, it is failed, not resumed a third time.
    let r = s.recover_runs("runner-c", 60_000, 2, 10).await.unwrap();
    assert!(r.resumed.is_empty());
    assert_eq!(r.failed.len(), 1);
    assert!(
        r.failed[0]
            .error
            .as_deref()
            .unwrap()
            .contains("stopped 2 times")
    );
    // Finished runs drop their lease and are never recovered.
    s.update_run(&alive.id, "running", None, None)
        .await
        .unwrap();
    let done = s
        .update_run(&alive.id, "succeeded", Some("ok"), None)
        .await
        .unwrap();
    assert_eq!(done.lease_owner, None);
    assert!(
        !s.renew_run_lease(&alive.id, "runner-a", 60_000)
            .await
            .unwrap()
    );
    let r = s.recover_runs("runner-d", 60_000, 5, 10).await.unwrap();
    assert!(r.resumed.is_empty() && r.failed.is_empty());
}

/// A batch answers each item as its single call would, writes its runs' events and token counts
/// once, and applies two moves of one run in their order.
async fn run_batches_answer_each_item_as_its_own_call(b: Backend) {
    use switchyard_api::runs::{RunUsage, UpdateRun};
    let (_db, s) = seeded(b).await;
    let trigger = json!({"event_id": "E"});
    let (queued, _) = s
        .create_run(&NewRun {
            org: "acme",
            team: "checkout",
            trigger: &trigger,
            idempotency_key: Some("old"),
            ..Default::default()
        })
        .await
        .unwrap();
    let (done, _) = s
        .create_run(&NewRun {
            org: "acme",
            team: "checkout",
            trigger: &trigger,
            ..Default::default()
        })
        .await
        .unwrap();
    s.update_run(&done.id, "cancelled", None, None)
        .await
        .unwrap();
    let events = s.pending_run_events(1000).await.unwrap();
    let cancelled = events.last().unwrap();
    assert_eq!(
        (cancelled.event_type.as_str(), &cancelled.data["run_id"]),
        ("run.cancelled", &json!(done.id)),
        "a cancelled run publishes run.cancelled with its change"
    );
    let before_events = events.len();
    let new_run = |team, key| NewRun {
        org: "acme",
        team,
        trigger: &trigger,
        idempotency_key: key,
        runner: Some("runner-a"),
        lease_ms: 60_000,
        running: true,
        ..Default::default()
    };
    let new = [
        new_run("checkout", Some("k1")),
        new_run("search", Some("k2")),
        new_run("checkout", Some("k1")), // the same key again, in the same batch
        new_run("checkout", Some("old")), // a key used before
        new_run("nope", Some("k3")),     // no such team
    ];
    let mut finish = UpdateRun::to("succeeded");
    finish.usage = Some(RunUsage {
        input_tokens: 30,
        output_tokens: 5,
    });
    finish.summary = Some("found it".into());
    let start = UpdateRun::to("running");
    let requeue = UpdateRun::to("queued");
    let updates = [
        (queued.id.as_str(), &start),
        (done.id.as_str(), &start),     // finished runs do not move
        ("no-such-run", &start),        // unknown
        (queued.id.as_str(), &finish),  // after its start, in the same batch
        (queued.id.as_str(), &requeue), // not from succeeded
    ];
    let w = s.write_runs(&new, &updates).await.unwrap();

    let created: Vec<_> = w
        .created
        .iter()
        .map(|r| r.as_ref().map(|(run, new)| (run.id.clone(), *new)))
        .collect();
    let (k1, k2) = (created[0].as_ref().unwrap(), created[1].as_ref().unwrap());
    assert!(k1.1 && k2.1 && k1.0 != k2.0, "{created:?}");
    assert_eq!(created[2].as_ref().unwrap(), &(k1.0.clone(), false));
    assert_eq!(created[3].as_ref().unwrap(), &(queued.id.clone(), false));
    assert!(matches!(created[4], Err(Error::Validation(_))));
    let k2_run = w.created[1].as_ref().unwrap();
    assert_eq!(
        (k2_run.0.team_id.as_str(), k2_run.0.status.as_str()),
        ("search", "running")
    );
    assert_eq!(k2_run.0.lease_owner.as_deref(), Some("runner-a"));

    let conflict = |r: &Result<_, Error>| {
        matches!(
            r,
            Err(Error::Conflict {
                code: "invalid-transition",
                ..
            })
        )
    };
    assert_eq!(w.updated[0].as_ref().unwrap().status, "running");
    assert!(conflict(&w.updated[1]));
    assert!(matches!(w.updated[2], Err(Error::NotFound(_))));
    let finished = w.updated[3].as_ref().unwrap();
    assert_eq!(
        (finished.status.as_str(), finished.summary.as_deref()),
        ("succeeded", Some("found it"))
    );
    assert!(conflict(&w.updated[4]));
    assert_eq!(
        s.get_run(None, &queued.id).await.unwrap().status,
        "succeeded"
    );

    // Two runs started, one started and finished: four events; 35 tokens counted once.
    let events = s.pending_run_events(1000).await.unwrap();
    let mut types: Vec<_> = events[before_events..]
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    types.sort();
    assert_eq!(
        types,
        ["run.started", "run.started", "run.started", "run.succeeded"]
    );
    let midnight = {
        let now = switchyard_common::time::now_ms();
        now - now.rem_euclid(86_400_000)
    };
    assert_eq!(
        s.tokens_used("acme", Some("checkout"), midnight)
            .await
            .unwrap(),
        35
    );
    assert_eq!(s.tokens_used("acme", None, midnight).await.unwrap(), 35);

    // New runs alone (how the agent-runner records a round's runs; one statement on
    // PostgreSQL): each inserted run publishes what was stored, and only those inserted.
    let before_events = s.pending_run_events(1000).await.unwrap().len();
    let queued_new = NewRun {
        idempotency_key: Some("k5"),
        runner: None,
        running: false,
        ..new_run("search", None)
    };
    let new = [
        new_run("checkout", Some("k4")),
        queued_new,
        new_run("checkout", Some("k4")),
        new_run("nope", Some("k6")),
    ];
    let w = s.write_runs(&new, &[]).await.unwrap();
    let (k4, fresh) = w.created[0].as_ref().unwrap();
    assert!(fresh);
    assert_eq!(w.created[1].as_ref().unwrap().0.status, "queued");
    let again = w.created[2].as_ref().unwrap();
    assert_eq!((again.0.id.as_str(), again.1), (k4.id.as_str(), false));
    assert!(matches!(w.created[3], Err(Error::Validation(_))));
    let events = s.pending_run_events(1000).await.unwrap();
    let events = &events[before_events..];
    assert_eq!(
        events.len(),
        1,
        "only the run recorded running publishes: {events:?}"
    );
    let stored = s.get_run(None, &k4.id).await.unwrap();
    assert_eq!(
        (events[0].event_type.as_str(), events[0].team_id.as_deref()),
        ("run.started", Some("checkout"))
    );
    assert_eq!(
        events[0].data,
        json!({
            "run_id": stored.id, "status": "running", "trigger_event_id": "E",
            "idempotency_key": "k4", "summary": null, "error": null,
            "created_at": stored.created_at, "started_at": stored.started_at,
            "finished_at": null, "attempts": 1, "usage": {"input_tokens": 0, "output_tokens": 0},
            "config_etag": null,
        }),
        "the event is the run as stored"
    );
    assert_eq!(
        serde_json::to_value(&stored).unwrap(),
        serde_json::to_value(k4).unwrap(),
        "the answer is the run as stored"
    );

    // Runs moved alone (how the agent-runner records what finished; one statement on
    // PostgreSQL): each event is the run as stored after its move, and the tokens count once.
    let k5 = w.created[1].as_ref().unwrap().0.id.clone();
    let tokens_before = s
        .tokens_used("acme", Some("checkout"), midnight)
        .await
        .unwrap();
    let mut done = UpdateRun::to("succeeded");
    done.usage = Some(RunUsage {
        input_tokens: 7,
        output_tokens: 3,
    });
    done.summary = Some("fixed".into());
    let w = s
        .write_runs(&[], &[(k4.id.as_str(), &done), (k5.as_str(), &start)])
        .await
        .unwrap();
    assert_eq!(w.updated[0].as_ref().unwrap().status, "succeeded");
    assert_eq!(w.updated[1].as_ref().unwrap().status, "running");
    let events = s.pending_run_events(1000).await.unwrap();
    let events = &events[before_events + 1..];
    assert_eq!(events.len(), 2, "{events:?}");
    for (id, kind) in [(&k4.id, "run.succeeded"), (&k5, "run.started")] {
        let stored = s.get_run(None, id).await.unwrap();
        let e = events
            .iter()
            .find(|e| e.data["run_id"] == json!(id))
            .unwrap();
        assert_eq!(e.event_type, kind);
        assert_eq!(
            e.data,
            json!({
                "run_id": stored.id, "status": stored.status, "trigger_event_id": "E",
                "idempotency_key": stored.idempotency_key, "summary": stored.summary,
                "error": null, "created_at": stored.created_at, "started_at": stored.started_at,
                "finished_at": stored.finished_at, "attempts": stored.attempts,
                "usage": {"input_tokens": stored.usage.input_tokens, "output_tokens": stored.usage.output_tokens},
                "config_etag": null,
            }),
            "the event is the run as stored after its move"
        );
    }
    assert_eq!(
        s.tokens_used("acme", Some("checkout"), midnight)
            .await
            .unwrap(),
        tokens_before + 10
    );
    // An empty batch writes nothing.
    let w = s.write_runs(&[], &[]).await.unwrap();
    assert!(w.created.is_empty() && w.updated.is_empty());
}

switchyard_common::on_both_backends!(
    runs_hold_leases_and_are_recovered,
    orgs_are_unique_and_listed,
    node_tree_moves_and_deletes,
    layers_merge_version_and_guard,
    approvals_need_a_second_admin,
    routing_is_unique_per_org_and_looks_up_by_precedence,
    org_level_identifiers_are_assigned_by_the_platform_admin,
    tokens_hash_expire_and_revoke,
    audit_is_chained_filterable_and_tamper_evident,
    audit_detects_deleted_entries,
    agent_runs_are_idempotent_and_move_forward,
    concurrent_writes_keep_one_chain,
    run_batches_answer_each_item_as_its_own_call,
);
