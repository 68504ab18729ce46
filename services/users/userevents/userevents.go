// Package userevents is the users service's published event contract: the stream it
// writes, the event types on it and each type's data, exactly as they travel in an
// envelope's data field. The users service writes these types; any other service may
// import this package to read them, instead of declaring the shapes again.
//
// Evolving a payload (docs/events.md, "Evolving a payload"): a payload only ever gains
// fields, which consumers ignore until they need them; no field is removed, renamed or
// retyped. Any other change is a new event type, named "<type>.v<N>" (user.registered.v2)
// with its own payload struct and version, published alongside the old one until
// every consumer reads the new. The version is not on the wire: the type name says it.
package userevents

import "github.com/google/uuid"

// Stream is the Redis stream the users service publishes to, and Source the envelope's
// source on its events.
const (
	Stream = "events.users"
	Source = "users"
)

// Type is an event type on Stream: an envelope's type.
type Type string

// The event types on Stream.
const (
	// TypeRegistered is a new user; the subject is the user's id.
	TypeRegistered Type = "user.registered"
)

// RegisteredVersion is the version of Registered: 1, the bare type name. A breaking
// change would be user.registered.v2, with a payload of its own.
const RegisteredVersion = 1

// Registered is the data of user.registered (notifications sends the welcome e-mail
// from it and keeps the address for later e-mails).
type Registered struct {
	UserID uuid.UUID `json:"user_id"`
	Email  string    `json:"email"`
	Name   string    `json:"name"`
}
