package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
)

// taskResponse is a background task as GET /api/v1/admin/tasks/{id} shows it.
type taskResponse struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	State string `json:"state"` // pending, active, retry, completed or failed
	// Result is what the task stored, once it has completed.
	Result json.RawMessage `json:"result,omitempty"`
	// Error is the last failure, while the task is retrying or once it has failed.
	Error string `json:"error,omitempty"`
}

func toTaskResponse(i tasks.Info) taskResponse {
	return taskResponse{ID: i.ID, Type: i.Type, State: string(i.State), Result: i.Result, Error: i.Error}
}

// taskStatus answers GET /api/v1/admin/tasks/{id}: the task's state, and its result or
// last error. The gateway reads it from the task queues in Redis, which every service
// shares, rather than asking the service that enqueued it: the id is all a client
// has. 404 for an id no queue holds (never enqueued, or gone after its retention);
// 503 when Redis cannot be reached.
func taskStatus(log *slog.Logger, t Tasks) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		info, err := t.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			var ae *apperr.Error
			if !errors.As(err, &ae) {
				err = apperr.Wrap(err, apperr.Unavailable, "the task queue is unavailable")
			}
			problem.Write(w, r, log, err)
			return
		}
		// The state changes while the client polls.
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, toTaskResponse(info))
	}
}
