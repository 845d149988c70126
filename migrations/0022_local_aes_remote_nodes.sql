-- 0022_local_aes_remote_nodes: local AE titles (DIMSE listeners) and remote nodes stored in the
-- database (issue 11 "Application entities and remote nodes", issue 13 admin API), so that a change
-- made through /api/v1 reaches the running listeners of every gateway process without a restart.
-- definition: the item as the configuration validator returned it (src/config.ts
-- validateDimseListener / validateRemoteNode), so fields added to a listener or node later flow
-- through without a migration. revision: bumped by every change; the ETag of the admin API.
-- source: 'config' = seeded from the YAML file and re-applied from it at each start; 'api' = created
-- or changed through the admin API, kept as it is by later starts (src/config/ae-store.ts).
-- Every row change writes a config-change audit event in the same transaction (ae-store.ts).
-- Forward-only: never edit this file once merged.
CREATE TABLE local_aes (
  ae_title text PRIMARY KEY
    CHECK (length(ae_title) BETWEEN 1 AND 16 AND ae_title = btrim(ae_title) AND position('\' in ae_title) = 0),
  definition jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
  revision bigint NOT NULL DEFAULT 1 CHECK (revision >= 1),
  source text NOT NULL CHECK (source IN ('config', 'api')),
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text NOT NULL CHECK (updated_by <> '')
);

CREATE TABLE remote_nodes (
  name text PRIMARY KEY CHECK (name <> ''),
  definition jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
  revision bigint NOT NULL DEFAULT 1 CHECK (revision >= 1),
  source text NOT NULL CHECK (source IN ('config', 'api')),
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text NOT NULL CHECK (updated_by <> '')
);

-- One row, bumped in the transaction of every change to either table (deletions included, which no
-- row's revision could show): a gateway process polls it to learn that it must reload.
CREATE TABLE ae_config_generation (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  generation bigint NOT NULL CHECK (generation >= 0)
);
INSERT INTO ae_config_generation (id, generation) VALUES (true, 0);
