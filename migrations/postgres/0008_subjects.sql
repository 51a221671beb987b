-- The person (or system) a token was issued to. Approvals compare subjects, not tokens, so one
-- person holding two admin tokens cannot approve their own change. Required for new admin tokens;
-- older tokens count as their own subject ("token:<id>").
ALTER TABLE cs_tokens ADD COLUMN subject TEXT;

-- Who proposed a change (subject), and what it changes: a node's layer, or the org's approval
-- policy itself (which needs approval while the policy protects anything).
ALTER TABLE cs_changes ADD COLUMN author_subject TEXT;
ALTER TABLE cs_changes ADD COLUMN kind TEXT NOT NULL DEFAULT 'layer';
