-- 0001: one row per user that ProvisionUser has provisioned.
-- Applied once by signup-bridge at start-up (recorded in signup_bridge_migrations, under an
-- advisory lock); IF NOT EXISTS lets it adopt a table created by hand beforehand.

CREATE TABLE IF NOT EXISTS signup_users (
    -- The user's object id in Entra External ID.
    entra_object_id      uuid        PRIMARY KEY,
    -- Lower-cased, trimmed; NULL when the user has none.
    email                text,
    display_name         text,
    -- Graph's createdDateTime.
    created_at           timestamptz,
    -- Ids at the other destinations, by destination name: {"stripe": "cus_...", "salesforce": "003..."}.
    -- Only ever merged into (jsonb ||), never replaced.
    external_ids         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    first_provisioned_at timestamptz NOT NULL DEFAULT now(),
    last_provisioned_at  timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS signup_users_email_idx ON signup_users (email);
