-- +goose Up
-- When the session (the family: one log-in and its refreshes) began, on every token of
-- it, so that a refresh can tell the session's age from the token it is given: no
-- refresh extends a session past SESSION_MAX_AGE from its log-in. Existing families
-- date from their oldest token, their log-in.
ALTER TABLE refresh_tokens ADD COLUMN session_started_at timestamptz;
UPDATE refresh_tokens t SET session_started_at = f.started
FROM (SELECT family_id, min(created_at) AS started FROM refresh_tokens GROUP BY family_id) f
WHERE f.family_id = t.family_id;
ALTER TABLE refresh_tokens ALTER COLUMN session_started_at SET NOT NULL;

-- +goose Down
ALTER TABLE refresh_tokens DROP COLUMN session_started_at;
