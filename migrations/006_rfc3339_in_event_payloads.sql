-- Instants inside event payloads are written the way the rest of the API
-- writes them: RFC 3339 in UTC with a Z, to the millisecond
-- (2026-12-06T18:45:36.248Z). to_jsonb(timestamptz) gave PostgreSQL's own
-- form (2026-12-06T18:45:36.2483+00:00), which depends on the session's
-- time zone. Events already written keep their text: the log is never
-- rewritten.
CREATE FUNCTION rfc3339(ts timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;
