package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
	"github.com/bazaar-shop/bazaar/pkg/logging"
	"github.com/bazaar-shop/bazaar/pkg/problem"
	"github.com/bazaar-shop/bazaar/services/payments/internal/payment"
)

// writeProblem renders err like problem.Write, and a declined charge as a 402 whose
// type carries the decline code (urn:bazaar:problem:payment_declined or
// insufficient_funds), which the saga branches on. pkg/apperr has no business codes
// with a status of their own yet; once it has, this becomes problem.Write.
func writeProblem(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var ae *apperr.Error
	if !errors.As(err, &ae) || !payment.IsDecline(ae.Code) {
		problem.Write(w, r, log, err)
		return
	}
	d := problem.Details{
		Type:      problem.TypePrefix + string(ae.Code),
		Title:     http.StatusText(http.StatusPaymentRequired),
		Status:    http.StatusPaymentRequired,
		Detail:    ae.Message,
		Instance:  r.URL.Path,
		RequestID: logging.RequestID(r.Context()),
	}
	w.Header().Set("Content-Type", problem.ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusPaymentRequired)
	_ = json.NewEncoder(w).Encode(d)
}
