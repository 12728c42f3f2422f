CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE task_status AS ENUM ('todo', 'doing', 'done');
-- products: serial pk, unique text column, NOT NULL / nullable / defaulted columns, timestamps
CREATE TABLE products (
  id BIGSERIAL PRIMARY KEY,
  sku TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  description TEXT,
  qty INTEGER NOT NULL DEFAULT 0,
  price_cents BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- unique together
CREATE TABLE vendor_products (
  id BIGSERIAL PRIMARY KEY,
  vendor TEXT NOT NULL,
  sku TEXT NOT NULL,
  name TEXT NOT NULL,
  qty INTEGER NOT NULL DEFAULT 0,
  UNIQUE (vendor, sku)
);
-- explicit text primary key
CREATE TABLE countries (
  code TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  population BIGINT
);
-- PostgreSQL enum column
CREATE TABLE tasks (
  id BIGSERIAL PRIMARY KEY,
  slug TEXT NOT NULL UNIQUE,
  title TEXT NOT NULL,
  status task_status NOT NULL DEFAULT 'todo'
);
-- partial unique indexes
CREATE TABLE memberships (
  id BIGSERIAL PRIMARY KEY,
  user_id BIGINT NOT NULL,
  org TEXT NOT NULL,
  role TEXT NOT NULL,
  deleted_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX memberships_live_user_org_key ON memberships (user_id, org) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX memberships_one_owner_per_org_key ON memberships (org) WHERE role = 'owner';
-- named unique constraint
CREATE TABLE subscriptions (
  id BIGSERIAL PRIMARY KEY,
  email TEXT NOT NULL,
  plan TEXT NOT NULL,
  seats INTEGER NOT NULL DEFAULT 1,
  CONSTRAINT subscriptions_email_unique UNIQUE (email)
);
