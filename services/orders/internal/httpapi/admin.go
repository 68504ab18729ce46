package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/httpjson"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/orders/internal/order"
	"github.com/bazaar-shop/bazaar/services/orders/internal/report"
)

type stepResponse struct {
	Step    string    `json:"step"`
	Attempt int       `json:"attempt"`
	Outcome string    `json:"outcome"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

// sagaResponse is a saga as operators see it.
type sagaResponse struct {
	OrderID      string         `json:"order_id"`
	UserID       string         `json:"user_id"`
	OrderStatus  string         `json:"order_status"`
	State        string         `json:"state"`
	NextStep     *string        `json:"next_step"`
	CancelReason *string        `json:"cancel_reason"`
	Charge       string         `json:"charge"`
	Reserved     bool           `json:"reserved"`
	Attempts     int            `json:"attempts"`
	Failures     int            `json:"failures"`
	FailingSince *time.Time     `json:"failing_since"`
	LastError    string         `json:"last_error,omitempty"`
	Leased       bool           `json:"leased"`
	CreatedAt    time.Time      `json:"created_at"`
	UpdatedAt    time.Time      `json:"updated_at"`
	FinishedAt   *time.Time     `json:"finished_at"`
	Steps        []stepResponse `json:"steps"`
}

func toSagaResponse(v order.SagaView) sagaResponse {
	s := v.Saga
	r := sagaResponse{
		OrderID: s.OrderID.String(), UserID: v.Order.UserID.String(), OrderStatus: string(v.Order.Status), State: string(s.State),
		Charge: string(s.Charge), Reserved: s.Reserved, Attempts: s.Attempts, Failures: s.Failures, LastError: s.LastError,
		Leased: v.Leased, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, Steps: make([]stepResponse, len(v.Steps)),
	}
	if v.Next != order.StepNone {
		next := string(v.Next)
		r.NextStep = &next
	}
	if s.Reason != order.ReasonNone {
		reason := string(s.Reason)
		r.CancelReason = &reason
	}
	if !s.FailingSince.IsZero() {
		r.FailingSince = &s.FailingSince
	}
	if !s.FinishedAt.IsZero() {
		r.FinishedAt = &s.FinishedAt
	}
	for i, l := range v.Steps {
		r.Steps[i] = stepResponse{Step: string(l.Step), Attempt: l.Attempt, Outcome: string(l.Outcome), Error: l.Error, At: l.At}
	}
	return r
}

// sagaCursor is a saga's position in a list of sagas (created_at, then order id).
func sagaCursor(v order.SagaView) page.Cursor {
	return page.Cursor{Time: v.Saga.CreatedAt, ID: v.Saga.OrderID}
}

// listSagas answers GET /api/v1/admin/sagas?state=: the sagas in state (running, stuck,
// compensating, compensation_failed, done), or every unfinished one without state,
// oldest first, each with its latest step log entries.
func listSagas(log *slog.Logger, orders *order.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var f apperr.Fields
		var state order.SagaState
		if s := q.Get("state"); s != "" {
			var err error
			var ae *apperr.Error
			if state, err = order.ParseSagaState(s); errors.As(err, &ae) {
				f.Add("state", ae.Message)
			}
		}
		pr, err := page.Parse(q)
		var ae *apperr.Error
		if errors.As(err, &ae) {
			f = append(f, ae.Fields...)
		}
		if err := f.Err(); err != nil {
			problem.Write(w, r, log, err)
			return
		}
		found, err := orders.Sagas(r.Context(), state, pr)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		views, next := page.Next(found, pr.Limit, sagaCursor)
		resp := listResponse[sagaResponse]{Items: make([]sagaResponse, len(views)), NextCursor: next}
		for i, v := range views {
			resp.Items[i] = toSagaResponse(v)
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, resp)
	}
}

type taskResponse struct {
	TaskID string `json:"task_id"`
}

// salesReport answers POST /api/v1/admin/reports/sales?from=&to=: it enqueues the
// report:sales task and answers 202 with its id, and the Location where the gateway
// shows its state and, once done, its result. 422 for a bad range; 503 when the task
// queue (Redis) cannot be reached.
func salesReport(log *slog.Logger, reports ReportQueue) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		rg, err := report.ParseRange(q.Get("from"), q.Get("to"))
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		id, err := reports.Enqueue(r.Context(), rg)
		if err != nil {
			problem.Write(w, r, log, apperr.Wrap(err, apperr.Unavailable, "the task queue is unavailable"))
			return
		}
		log.InfoContext(r.Context(), "sales report enqueued", "task_id", id, "from", rg.From, "to", rg.To)
		w.Header().Set("Location", "/api/v1/admin/tasks/"+id)
		httpjson.Write(w, http.StatusAccepted, taskResponse{TaskID: id})
	}
}

// adminOrderResponse is one order as operators see it whole.
type adminOrderResponse struct {
	Order  orderResponse   `json:"order"`
	Saga   sagaResponse    `json:"saga"`
	Events []outbox.Record `json:"events"` // outbox.Record is the wire form: pkg/outbox says why
}

// adminOrder answers GET /api/v1/admin/orders/{id}: any user's order, its saga with
// every entry of its step log, and the events the order wrote about it (its outbox
// rows, published or still waiting); 404 for an unknown or malformed id.
func adminOrder(log *slog.Logger, orders *order.Service, events EventLog) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(r.PathValue("id"))
		if err != nil {
			problem.Write(w, r, log, order.ErrNotFound)
			return
		}
		v, err := orders.Saga(r.Context(), id)
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		records, err := events.Events(r.Context(), []string{id.String()})
		if err != nil {
			problem.Write(w, r, log, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(w, http.StatusOK, adminOrderResponse{
			Order: toOrderResponse(v.Order), Saga: toSagaResponse(v), Events: records,
		})
	}
}
