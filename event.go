package pges

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// EventData is an event to append.
type EventData struct {
	// ID identifies the event. Appending an id again with the same content
	// returns the first append's result instead of writing it twice. Zero: a
	// new UUIDv7 (time-ordered, which keeps the event id index compact).
	ID uuid.UUID
	// Type names the event: 1-200 characters, not starting with "$".
	Type string
	// Payload is the event's JSON body, at most 1 MiB.
	Payload json.RawMessage
	// Metadata is the envelope data carried with the event.
	Metadata Metadata
	// Tags are the event's DCB tags: any non-empty strings of at most 1000
	// characters, stored and matched exactly.
	Tags []string
	// SchemaVersion is the version of the payload's shape (1-999999999),
	// stored as the metadata key "schema_version" (migrations/00008). Zero
	// stores nothing, which reads as version 1. A Codec sets it.
	SchemaVersion int
}

// Metadata carries the fields users bring from their message envelopes.
type Metadata struct {
	CorrelationID string         `json:"correlation_id,omitempty"`
	CausationID   string         `json:"causation_id,omitempty"`
	User          string         `json:"user,omitempty"`
	Service       string         `json:"service,omitempty"`
	Extra         map[string]any `json:"extra,omitempty"`
}

// RecordedEvent is an event read from the log.
type RecordedEvent struct {
	// Position orders events within a tenant: strictly increasing, with gaps.
	Position int64     `json:"position"`
	ID       uuid.UUID `json:"id"`
	Type     string    `json:"type"`
	// StreamID and StreamVersion are empty and 0 for events appended
	// without a stream (DCB).
	StreamID      string          `json:"stream_id,omitempty"`
	StreamVersion int64           `json:"stream_version,omitempty"`
	Payload       json.RawMessage `json:"payload"`
	Metadata      Metadata        `json:"metadata"`
	Tags          []string        `json:"tags,omitempty"`
	RecordedAt    time.Time       `json:"recorded_at"`
	// SchemaVersion is the version of the payload's shape it was written
	// with: 1 unless the append gave another; 0 if the stored value is not
	// a version (written by a SQL client before migration 00008).
	SchemaVersion int `json:"schema_version"`
	// TenantID is the tenant whose log holds the event (set by every read
	// path; left out of JSON, where the tenant is the file's or command's).
	TenantID string `json:"-"`
}

// ExpectedVersion is the optimistic concurrency check of a stream append.
type ExpectedVersion int64

const (
	// Any appends whatever the stream's version.
	Any ExpectedVersion = -1
	// NoStream requires that the stream has no events.
	NoStream ExpectedVersion = 0
	// StreamExists requires that the stream has at least one event.
	StreamExists ExpectedVersion = -2
)

// Exactly requires the stream's current version to be v (0 is NoStream).
func Exactly(v int64) ExpectedVersion { return ExpectedVersion(v) }

func (v ExpectedVersion) String() string {
	switch v {
	case Any:
		return "any"
	case NoStream:
		return "no stream"
	case StreamExists:
		return "stream exists"
	}
	return strconv.FormatInt(int64(v), 10)
}

// AppendResult is what an append wrote: the stream's new version (0 for
// appends without a stream) and the events' positions in batch order.
type AppendResult struct {
	StreamVersion int64
	Positions     []int64
}

// wireEvent is an event as the SQL API takes it (one element of the jsonb
// batch), so the whole batch travels in one parameter of one round trip.
type wireEvent struct {
	ID       uuid.UUID       `json:"id"`
	Type     string          `json:"type"`
	Payload  json.RawMessage `json:"payload"`
	Metadata *wireMetadata   `json:"metadata,omitempty"`
	Tags     []string        `json:"tags,omitempty"`
}

// wireMetadata is the stored metadata object: the envelope fields and the
// schema version side by side.
type wireMetadata struct {
	Metadata
	SchemaVersion int `json:"schema_version,omitempty"`
}

// encodeBatch builds the jsonb batch. JSON validity is checked here because
// invalid JSON cannot be embedded; every other rule is the SQL API's.
func encodeBatch(events []EventData) ([]byte, error) {
	if len(events) == 0 {
		return nil, invalid(-1, "empty batch: append at least one event")
	}
	wire := make([]wireEvent, len(events))
	seen := make(map[uuid.UUID]bool, len(events))
	for i, e := range events {
		if e.ID != uuid.Nil {
			if seen[e.ID] {
				return nil, invalid(i, "event %d: id %s appears twice in the batch", i, e.ID)
			}
			seen[e.ID] = true
		}
		if len(e.Payload) == 0 || !json.Valid(e.Payload) {
			return nil, invalid(i, "event %d: payload is not valid JSON", i)
		}
		if err := checkText(e, i); err != nil {
			return nil, err
		}
		id := e.ID
		if id == uuid.Nil {
			var err error
			if id, err = uuid.NewV7(); err != nil {
				return nil, fmt.Errorf("event id: %w", err)
			}
		}
		if e.SchemaVersion < 0 || e.SchemaVersion > maxSchemaVersion {
			return nil, invalid(i, "event %d: schema version %d is not between 1 and %d", i, e.SchemaVersion, maxSchemaVersion)
		}
		wire[i] = wireEvent{ID: id, Type: e.Type, Payload: e.Payload, Tags: e.Tags}
		if !e.Metadata.isZero() || e.SchemaVersion > 1 {
			// Version 1 is the default and is not stored, so that an event
			// reads back the same whether or not a codec wrote it.
			md := wireMetadata{Metadata: e.Metadata}
			if e.SchemaVersion > 1 {
				md.SchemaVersion = e.SchemaVersion
			}
			wire[i].Metadata = &md
		}
	}
	return json.Marshal(wire)
}

// checkText refuses what encoding/json would silently alter or PostgreSQL
// cannot store: invalid UTF-8 (json.Marshal replaces it with U+FFFD) and NUL
// characters (jsonb and text refuse them, with an error that names no
// event), in the type, tags, metadata and payload.
func checkText(e EventData, i int) error {
	bad := func(what string) error {
		return invalid(i, "event %d: %s is not valid UTF-8 without NUL characters", i, what)
	}
	if !cleanText(e.Type) {
		return bad("type")
	}
	for _, tag := range e.Tags {
		if !cleanText(tag) {
			return bad("a tag")
		}
	}
	m := e.Metadata
	if !cleanText(m.CorrelationID) || !cleanText(m.CausationID) || !cleanText(m.User) || !cleanText(m.Service) {
		return bad("metadata")
	}
	if len(m.Extra) > 0 {
		// Marshal first: it refuses cycles (which the walk below would
		// follow forever) and runs the values' own MarshalJSON, whose
		// output is copied as is and must be clean too. The walk then finds
		// the plain strings that Marshal would have repaired.
		out, err := json.Marshal(m.Extra)
		if err != nil {
			return invalid(i, "event %d: metadata: %v", i, err)
		}
		if !utf8.Valid(out) || hasNULEscape(out) || !cleanValue(reflect.ValueOf(m.Extra)) {
			return bad("metadata")
		}
	}
	if !utf8.Valid(e.Payload) || hasNULEscape(e.Payload) {
		return bad("payload")
	}
	return nil
}

func cleanText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

var marshalerType = reflect.TypeFor[json.Marshaler]()

// cleanValue walks what json.Marshal would encode: every string in it,
// map keys included, must be clean text.
func cleanValue(v reflect.Value) bool {
	if k := v.Kind(); k != reflect.Invalid && k != reflect.Interface && k != reflect.Pointer &&
		(v.Type().Implements(marshalerType) || reflect.PointerTo(v.Type()).Implements(marshalerType)) {
		return true // encoded by its own MarshalJSON, whose output was checked
	}
	switch v.Kind() {
	case reflect.String:
		return cleanText(v.String())
	case reflect.Pointer, reflect.Interface:
		return v.IsNil() || cleanValue(v.Elem())
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if !cleanValue(it.Key()) || !cleanValue(it.Value()) {
				return false
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return true // []byte: encoded as base64
		}
		for i := range v.Len() {
			if !cleanValue(v.Index(i)) {
				return false
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && !cleanValue(v.Field(i)) {
				return false
			}
		}
	}
	return true
}

// hasNULEscape reports whether valid JSON holds the escape \u0000, which
// jsonb refuses. A backslash escapes the byte after it, so "\\u0000" is
// a backslash followed by the text u0000, not an escape.
func hasNULEscape(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped byte
	}
	return false
}

// checkStreamID refuses a stream id that PostgreSQL's text cannot hold, so
// that it fails as bad input and not with a server error.
func checkStreamID(id string) error {
	if !cleanText(id) {
		return invalid(-1, "stream id is not valid UTF-8 without NUL characters")
	}
	return nil
}

// maxSchemaVersion is the largest schema version the store accepts (nine
// digits, as es.check_batch in migrations/00008).
const maxSchemaVersion = 999_999_999

func (m Metadata) isZero() bool {
	return m.CorrelationID == "" && m.CausationID == "" && m.User == "" && m.Service == "" && len(m.Extra) == 0
}

// CausedBy returns m for an event caused by ev (a reaction in a handler, a
// process manager's next command's result): its causation id is ev's id,
// and its correlation id ev's, or ev's id when ev starts the chain. So a
// whole conversation shares one correlation id, and each event points to
// its direct cause. m's other fields are kept.
func (m Metadata) CausedBy(ev RecordedEvent) Metadata {
	m.CausationID = ev.ID.String()
	m.CorrelationID = ev.Metadata.CorrelationID
	if m.CorrelationID == "" {
		m.CorrelationID = ev.ID.String()
	}
	return m
}
