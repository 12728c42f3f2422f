-- expression conflict targets
CREATE TABLE accounts (
  id BIGSERIAL PRIMARY KEY,
  tenant TEXT NOT NULL DEFAULT 'main',
  email TEXT NOT NULL,
  name TEXT NOT NULL,
  profile JSONB NOT NULL DEFAULT '{}',
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE aliases (
  id BIGSERIAL PRIMARY KEY,
  owner TEXT NOT NULL,
  alias TEXT,
  note TEXT NOT NULL
);
-- diesel_upsert::unique_index(accounts::table, index_expression(lower(accounts::email))),
-- (accounts::tenant, index_expression(accounts::profile.retrieve_as_text("handle"))) and
-- (aliases::owner, index_expression(coalesce(aliases::alias, ""))) (tests/expressions.rs checks
-- that these lines are what the helper writes)
CREATE UNIQUE INDEX "accounts_lower_email_key_9f4c1d4d" ON "accounts" ((lower("email")));
CREATE UNIQUE INDEX "accounts_tenant_profile_handle_text_key_5fdba2bb" ON "accounts" ("tenant", (("profile" ->> 'handle'::text)));
CREATE UNIQUE INDEX "aliases_owner_coalesce_alias_text_key_4bc3ece7" ON "aliases" ("owner", (coalesce("alias", ''::text)));
