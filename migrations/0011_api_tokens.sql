-- 0011_api_tokens: API tokens for the HTTP endpoints (issue 12, Access). Only the SHA-256 of the
-- token secret is stored (the secret is printed once by `radscribe token create`); a presented
-- bearer token is looked up by its hash. Roles are the closed set Role in src/http/auth/roles.ts.
-- Forward-only: never edit once merged.
CREATE TABLE api_tokens (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (name <> ''),
  role text NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'ingest')),
  token_hash text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  -- Narrowing of the role, e.g. the STOW-RS study paths an ingest token may push to; empty = all.
  scopes text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  revoked_at timestamptz,
  created_by text NOT NULL,
  -- First successful use (recorded once as user-authentication outcome 0).
  first_used_at timestamptz,
  CHECK (expires_at IS NULL OR expires_at > created_at)
);
