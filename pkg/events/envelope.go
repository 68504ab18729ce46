// Package events carries Bazaar's domain events on Redis Streams: the envelope every
// stream entry has (CloudEvents attribute names as fields), and the consumer that reads
// a stream with a consumer group and applies each event exactly once in effect.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// DLQStream is where entries go that could not be handled after MaxDeliveries tries,
// or could not be parsed at all.
const DLQStream = "events.dlq"

// Envelope is one event as it travels on a stream.
type Envelope struct {
	ID          uuid.UUID
	Type        string // e.g. user.registered
	Source      string // the publishing service
	Subject     string // the id of the entity it is about
	Time        time.Time
	Data        json.RawMessage
	TraceParent string // W3C trace context of the request that caused it
}

// Fields is the envelope as stream entry fields (XADD's field-value pairs).
func (e Envelope) Fields() map[string]any {
	return map[string]any{
		"specversion":     "1.0",
		"id":              e.ID.String(),
		"type":            e.Type,
		"source":          e.Source,
		"subject":         e.Subject,
		"time":            e.Time.UTC().Format(time.RFC3339Nano),
		"datacontenttype": "application/json",
		"data":            string(e.Data),
		"traceparent":     e.TraceParent,
	}
}

// ErrMalformed marks an entry that is not a valid envelope: a poison message, which no
// retry can fix.
var ErrMalformed = errors.New("malformed event")

// Parse reads an envelope from stream entry fields. A missing or invalid attribute is
// ErrMalformed.
func Parse(fields map[string]any) (Envelope, error) {
	str := func(k string) string { s, _ := fields[k].(string); return s }
	var e Envelope
	var err error
	if e.ID, err = uuid.Parse(str("id")); err != nil {
		return e, fmt.Errorf("%w: id: %v", ErrMalformed, err)
	}
	if e.Type, e.Source, e.Subject = str("type"), str("source"), str("subject"); e.Type == "" || e.Source == "" {
		return e, fmt.Errorf("%w: type and source are required", ErrMalformed)
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, str("time")); err != nil {
		return e, fmt.Errorf("%w: time: %v", ErrMalformed, err)
	}
	data := str("data")
	if !json.Valid([]byte(data)) {
		return e, fmt.Errorf("%w: data is not JSON", ErrMalformed)
	}
	e.Data = json.RawMessage(data)
	e.TraceParent = str("traceparent")
	return e, nil
}

// Decode unmarshals the event's data into v; failure is ErrMalformed.
func (e Envelope) Decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("%w: %s data: %v", ErrMalformed, e.Type, err)
	}
	return nil
}
