package payment

import (
	"context"

	"github.com/bazaar-shop/bazaar/pkg/apperr"
)

// Outcome is a processor's answer to a charge.
type Outcome struct {
	Status      Status      // StatusCaptured or StatusDeclined
	DeclineCode DeclineCode // why, when declined
	Reference   string      // the processor's id for the charge
}

// Processor moves the money: the payment provider, the outside world. Both calls must
// be idempotent on key: a second call with a key answers the first call's outcome and
// moves no more money (Stripe's Idempotency-Key works this way), even while the first
// is still running. The Service relies on that twice: to finish a charge or refund
// whose outcome a crash left unrecorded, and to call it with no lock held, so that
// concurrent requests for one payment (identical charges, a look-up, the sweep) may
// each ask. The Service sends one request per key: a charge's key is its payment's id
// and its request the one stored with the payment; a refund's key is "refund_" and
// the payment's id.
//
// An error means the outcome is unknown (the processor could not be reached or did
// not answer in time): nothing is recorded and the call may be repeated with the key.
type Processor interface {
	// Charge takes c's amount with c's method.
	Charge(ctx context.Context, key string, c ChargeRequest) (Outcome, error)
	// Refund gives a captured payment's amount back.
	Refund(ctx context.Context, key string, p Payment) error
}

// StripeTest is the processor of Stripe's test mode, in process: pm_card_visa is
// captured, pm_card_chargeDeclined is declined (payment_declined) and
// pm_card_chargeDeclinedInsufficientFunds is declined for insufficient funds. It keeps
// no state: its answer is a function of the request alone, and the reference it
// returns is derived from the key, as a real provider's replayed answer carries the
// first charge's id. So a repeat of a key with its request, concurrent or days later,
// in this process or another, answers exactly what the first call did and (being a
// test mode) moves no money: idempotent on the key as Processor requires, given one
// request per key, which the Service keeps to. (Stripe refuses a key reused with other
// parameters; nothing here sends one.)
type StripeTest struct{}

var _ Processor = StripeTest{}

// Charge implements Processor. An unknown method is an apperr.Invalid error (the
// Service parses methods before it gets here).
func (StripeTest) Charge(ctx context.Context, key string, c ChargeRequest) (Outcome, error) {
	if err := ctx.Err(); err != nil {
		return Outcome{}, err
	}
	ref := "ch_test_" + key
	switch c.Method {
	case MethodVisa:
		return Outcome{Status: StatusCaptured, Reference: ref}, nil
	case MethodDeclined:
		return Outcome{Status: StatusDeclined, DeclineCode: DeclinePaymentDeclined, Reference: ref}, nil
	case MethodInsufficientFunds:
		return Outcome{Status: StatusDeclined, DeclineCode: DeclineInsufficientFunds, Reference: ref}, nil
	}
	return Outcome{}, apperr.E(apperr.Invalid, "unknown payment method %q", c.Method)
}

// Refund implements Processor. Only a captured payment can be refunded; anything else
// is an apperr.Conflict error.
func (StripeTest) Refund(ctx context.Context, _ string, p Payment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.Status != StatusCaptured {
		return apperr.E(apperr.Conflict, "cannot refund a %s payment", p.Status)
	}
	return nil
}
