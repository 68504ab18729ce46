-- +goose Up
-- retention:cleanup deletes the step logs of sagas finished long ago; without this it
-- would scan every saga for them.
CREATE INDEX sagas_finished ON sagas (finished_at) WHERE state = 'done';

-- +goose Down
DROP INDEX sagas_finished;
