-- The org secrets store: credentials that config refers to as {"secret": "<name>"}. Values are
-- sealed (XChaCha20-Poly1305 under a named master key, bound to org and name); only a fingerprint
-- is ever shown.
CREATE TABLE cs_secrets (
    org_id       TEXT NOT NULL REFERENCES cs_orgs (id),
    name         TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);
