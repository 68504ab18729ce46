-- +goose Up
-- notifications is the source of truth for e-mail: a row is written (queued) in the
-- transaction that handles its event, and the email:send task that sends it is
-- enqueued afterwards by the dispatcher, which finds rows whose task was never
-- enqueued (enqueued_at IS NULL) or was enqueued long ago and never finished.
CREATE TABLE notifications (
    id          uuid PRIMARY KEY,
    -- One notification per event. The inbox already makes a redelivered event a
    -- no-op; this is the second guard.
    event_id    uuid NOT NULL UNIQUE,
    kind        text NOT NULL CHECK (kind IN ('welcome', 'order_confirmed', 'order_cancelled', 'payment_refunded')),
    user_id     uuid NOT NULL,
    recipient   text NOT NULL,
    subject     text NOT NULL,
    data        jsonb NOT NULL,  -- the template data
    status      text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,  -- SMTP attempts that got an answer
    error       text,                        -- the last failure
    created_at  timestamptz NOT NULL,
    sent_at     timestamptz,
    enqueued_at timestamptz,                 -- when the dispatcher last enqueued its task
    CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);

-- GET /api/v1/notifications: a user's, newest first, by keyset.
CREATE INDEX notifications_user_created ON notifications (user_id, created_at DESC, id DESC);
-- The dispatcher's scan; the partial index stays as small as the backlog.
CREATE INDEX notifications_queued ON notifications (created_at) WHERE status = 'queued';

-- +goose Down
DROP TABLE notifications;
