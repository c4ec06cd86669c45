-- OctoLLM lab schema (PostgreSQL 15). Idempotent: safe to run on every start.
-- relationships has no foreign keys on purpose: the lab starts without them and the
-- Data Corruption procedure's prevention adds them.

CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS amcheck;

CREATE TABLE IF NOT EXISTS tasks (
    task_id      text PRIMARY KEY,
    goal         text NOT NULL,
    constraints  jsonb DEFAULT '[]',
    priority     text DEFAULT 'medium',
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    assigned_arm text,
    result       jsonb,
    created_at   timestamptz DEFAULT now(),
    updated_at   timestamptz DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_tasks_created_at ON tasks (created_at);
CREATE INDEX IF NOT EXISTS idx_tasks_status ON tasks (status);

CREATE TABLE IF NOT EXISTS action_log (
    id        bigserial PRIMARY KEY,
    task_id   text,
    action    text,
    arm       text,
    details   jsonb DEFAULT '{}',
    timestamp timestamptz DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_action_log_task_id ON action_log (task_id);

CREATE TABLE IF NOT EXISTS entities (
    entity_id    bigint PRIMARY KEY,
    entity_type  text NOT NULL,
    name         text,
    properties   jsonb DEFAULT '{}',
    access_count int DEFAULT 0,
    created_at   timestamptz DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_entities_type ON entities (entity_type);

CREATE TABLE IF NOT EXISTS relationships (
    relationship_id   bigserial PRIMARY KEY,
    from_entity_id    bigint NOT NULL,
    to_entity_id      bigint NOT NULL,
    relationship_type text,
    properties        jsonb DEFAULT '{}',
    created_at        timestamptz DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_relationships_from ON relationships (from_entity_id);
CREATE INDEX IF NOT EXISTS idx_relationships_to ON relationships (to_entity_id);
