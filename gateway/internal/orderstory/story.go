// Package orderstory tells one order's whole story, for an admin: its saga step by
// step, every event it caused and who consumed each, the e-mails those led to and
// their tasks, and the trace that ties them together. The gateway answers it as
// GET /api/v1/admin/orders/{id}/story, and the storefront's admin pages show it.
//
// The story is assembled from what the services say over their public admin API,
// asked through the gateway's own handler in the process (Builder), so that the
// admin's token, role and rate limits are checked as for any call; and from what
// only the gateway sees whole: the consumer groups on the services' streams and the
// task queues, in Redis. A part that cannot be read leaves a Gap, not an error: the
// rest of the story is still worth showing when one service is down.
package orderstory

import (
	"time"

	"github.com/google/uuid"
)

// Story is one order's whole story. Every list is empty, never null, when there is
// nothing in it.
type Story struct {
	// OrderID is the order the story is about.
	OrderID uuid.UUID `json:"order_id"`
	// Order is the order as it stands; nil when the orders service could not answer
	// (Unavailable names it).
	Order *Order `json:"order"`
	// Saga is the order's saga with its whole step log; nil together with Order.
	Saga *Saga `json:"saga"`
	// Reservation is the stock inventory holds, or held, for the order; nil when there
	// is none (the reserve was refused, or never made) or inventory could not answer.
	Reservation *Reservation `json:"reservation"`
	// Payments are the order's payments as payments stores them: at most one.
	Payments []Payment `json:"payments"`
	// Events are the events the order caused, from orders (subject: the order),
	// inventory (stock.*, subject: the order) and payments (subject: its payment),
	// merged and ordered by time, each with its stream entry and its consumers.
	Events []Event `json:"events"`
	// Notifications are what the events led to in the notifications service: the
	// e-mails owed, each with its email:send task. A sent one is an e-mail sent.
	Notifications []Notification `json:"notifications"`
	// TraceID is the W3C trace id (32 lower-case hex digits) of the request that
	// placed the order, read from order.created's traceparent: the saga, the events'
	// publishing and handling and the e-mail tasks are all in that trace. "" when it
	// is not known.
	TraceID string `json:"trace_id"`
	// Unavailable lists the parts that could not be read, and why; empty when the
	// story is whole.
	Unavailable []Gap `json:"unavailable"`
}

// Order is the order as its customer sees it.
type Order struct {
	ID     uuid.UUID `json:"id"`
	UserID uuid.UUID `json:"user_id"`
	// Status is pending, reserved, paid, confirmed, cancelling or cancelled.
	Status string `json:"status"`
	// CancelReason says why it was cancelled; nil unless it was.
	CancelReason  *string     `json:"cancel_reason"`
	Items         []OrderLine `json:"items"`
	TotalCents    int64       `json:"total_cents"`
	Currency      string      `json:"currency"`
	PaymentMethod string      `json:"payment_method"`
	CreatedAt     time.Time   `json:"created_at"`
	UpdatedAt     time.Time   `json:"updated_at"`
}

// OrderLine is one product of an order, at the price it was ordered at.
type OrderLine struct {
	ProductID      uuid.UUID `json:"product_id"`
	Quantity       int       `json:"quantity"`
	UnitPriceCents int64     `json:"unit_price_cents"`
}

// Saga is the order's saga: where it stands, and each step it took.
type Saga struct {
	// State is running, stuck, compensating, compensation_failed or done.
	State string `json:"state"`
	// NextStep is the step it takes next; nil when there is none.
	NextStep *string `json:"next_step"`
	// Charge is what the saga knows of the payment: none, unknown, captured, declined
	// or refunded.
	Charge string `json:"charge"`
	// Reserved says a reservation may exist, which compensation must release.
	Reserved bool `json:"reserved"`
	// FailingSince is when the current run of failed attempts began; nil while the
	// saga makes progress.
	FailingSince *time.Time `json:"failing_since"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	FinishedAt   *time.Time `json:"finished_at"`
	// Steps is the whole step log, oldest first: every attempt of every step.
	Steps []Step `json:"steps"`
}

// Step is one attempt of one saga step.
type Step struct {
	// Step is reserve, charge, commit, release, refund, expire or cancel.
	Step    string `json:"step"`
	Attempt int    `json:"attempt"`
	// Outcome is ok; refused, a business answer that ends the step (out of stock,
	// declined); or failed, a transient failure to be retried.
	Outcome string `json:"outcome"`
	// Error is what went wrong, absent when nothing did.
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

// Reservation is the stock held for the order.
type Reservation struct {
	// Status is reserved, committed or released.
	Status     string      `json:"status"`
	Items      []OrderLine `json:"items"`
	TotalCents int64       `json:"total_cents"`
	// Currency is "" for a reservation that never held anything.
	Currency string `json:"currency"`
	// ExpiresAt is when a reservation still reserved is released by expiry.
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Payment is a charge of the order.
type Payment struct {
	ID          uuid.UUID `json:"id"`
	AmountCents int64     `json:"amount_cents"`
	Currency    string    `json:"currency"`
	Method      string    `json:"method"`
	// Status is pending (the processor's answer not recorded yet), captured, declined
	// or refunded.
	Status string `json:"status"`
	// DeclineCode is payment_declined or insufficient_funds for a declined payment;
	// nil otherwise.
	DeclineCode *string    `json:"decline_code"`
	CreatedAt   time.Time  `json:"created_at"`
	SettledAt   *time.Time `json:"settled_at"`
	RefundedAt  *time.Time `json:"refunded_at"`
}

// Event is one event the order caused: its outbox row, its entry on the stream, and
// what each consumer group on that stream did with it.
type Event struct {
	ID      uuid.UUID `json:"id"`
	Stream  string    `json:"stream"`
	Type    string    `json:"type"`
	Subject string    `json:"subject"`
	// Time is when it happened, PublishedAt when the outbox relay put it on Stream
	// (nil while it waits in the outbox).
	Time        time.Time  `json:"time"`
	PublishedAt *time.Time `json:"published_at"`
	// EntryID is its entry on Stream; nil when it is not to be found there: not
	// published yet, trimmed from the stream since, or the streams could not be read.
	EntryID *string `json:"entry_id"`
	// Consumers are the consumer groups on Stream and how far each got with the
	// entry; empty when EntryID is nil.
	Consumers []Consumer `json:"consumers"`
}

// The states of an event's entry in a consumer group.
const (
	// Consumed is an entry delivered to the group and acknowledged: handled (or, after
	// five failures, dead-lettered). A group created after the entry was added, at the
	// stream's end (the gateway's), counts it consumed too.
	Consumed = "consumed"
	// Pending is an entry delivered and not yet acknowledged: being handled, or
	// waiting for a retry.
	Pending = "pending"
	// NotDelivered is an entry past the group's last delivered one: the group has not
	// read that far yet.
	NotDelivered = "not_delivered"
)

// Consumer is one consumer group on an event's stream, and where the event's entry
// is in it.
type Consumer struct {
	// Group is the group's name, the consuming program's (notifications, gateway).
	Group string `json:"group"`
	// State is Consumed, Pending or NotDelivered.
	State string `json:"state"`
	// Consumer is the replica that holds a pending entry; absent otherwise.
	Consumer string `json:"consumer,omitempty"`
	// Deliveries counts the deliveries of a pending entry; absent otherwise.
	Deliveries int64 `json:"deliveries,omitempty"`
	// HandledAt is, for the notifications group, when its inbox recorded the event as
	// handled; absent when the inbox does not have it (not handled, dead-lettered,
	// or forgotten after INBOX_RETENTION).
	HandledAt *time.Time `json:"handled_at,omitempty"`
}

// Notification is an e-mail owed because of one of the order's events.
type Notification struct {
	// ID is the notification's id, which is also its email:send task's id.
	ID      uuid.UUID `json:"id"`
	EventID uuid.UUID `json:"event_id"`
	// Kind is order_confirmed, order_cancelled, payment_refunded (or welcome,
	// daily_sales_report for events of other kinds).
	Kind string `json:"kind"`
	// Recipient is the address it goes to: an admin chasing an e-mail needs it.
	Recipient string `json:"recipient"`
	Subject   string `json:"subject"`
	// Status is queued, sent or failed.
	Status string `json:"status"`
	// Attempts counts the SMTP attempts that got an answer.
	Attempts int `json:"attempts"`
	// Error is the last failure; nil when there was none.
	Error *string `json:"error"`
	// MessageID is the e-mail's Message-ID, the same on every copy sent.
	MessageID string     `json:"message_id"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at"`
	// Task is its email:send task as the queues hold it; nil when they do not (a
	// completed task is kept a day; one not enqueued yet is not there either) or
	// could not be read (Unavailable says so).
	Task *Task `json:"task"`
}

// Task is a background task as the queues hold it.
type Task struct {
	ID    string `json:"id"`
	Queue string `json:"queue"`
	// State is pending, active, retry, completed or failed.
	State    string `json:"state"`
	Retried  int    `json:"retried"`
	MaxRetry int    `json:"max_retry"`
	// Error is the last failure while it retries or once it failed; absent otherwise.
	Error       string     `json:"error,omitempty"`
	CompletedAt *time.Time `json:"completed_at"`
}

// The parts of a story a Gap can name.
const (
	PartOrders        = "orders"        // the orders service's answer
	PartInventory     = "inventory"     // the inventory service's answer
	PartPayments      = "payments"      // the payments service's answer
	PartNotifications = "notifications" // the notifications service's answer
	PartStreams       = "streams"       // the events' consumers, read from Redis
	PartTasks         = "tasks"         // the e-mail tasks, read from the task queues
)

// Gap is a part of the story that could not be read.
type Gap struct {
	// Part is one of the Part constants.
	Part string `json:"part"`
	// Status is the HTTP status the service answered; absent for streams and tasks.
	Status int `json:"status,omitempty"`
	// Detail says what went wrong, as the service's problem document did.
	Detail string `json:"detail"`
}
