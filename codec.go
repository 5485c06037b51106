package pges

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"reflect"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Errors of typed decoding; a DecodeError matches one of them.
var (
	// ErrUnknownEventType: no Go type is registered for the event's type.
	ErrUnknownEventType = errors.New("unknown event type")
	// ErrUnknownSchemaVersion: the event was written with a schema version
	// the codec cannot bring to the current one (no upcaster for a step,
	// or a version newer than the registered one).
	ErrUnknownSchemaVersion = errors.New("unknown event schema version")
	// ErrEventSchemaMismatch: the payload, after upcasting, does not decode
	// into the registered type (corrupt JSON, a field of another type, a
	// field the type does not have), or an upcaster failed.
	ErrEventSchemaMismatch = errors.New("event schema mismatch")
)

// DecodeError reports an event that could not be decoded into a typed
// value. It names the event; errors.Is matches its kind (one of the errors
// above) and errors.As reaches Err.
type DecodeError struct {
	TenantID      string
	Position      int64
	Type          string
	SchemaVersion int
	Kind          error
	Err           error
}

func (e *DecodeError) Error() string {
	msg := fmt.Sprintf("tenant %q, position %d: event %q (schema version %d): %v", e.TenantID, e.Position, e.Type, e.SchemaVersion, e.Kind)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *DecodeError) Is(target error) bool { return target == e.Kind }
func (e *DecodeError) Unwrap() error        { return e.Err }

// Upcaster turns a payload of one schema version into the next version's.
// It must not keep or modify its argument.
type Upcaster func(payload json.RawMessage) (json.RawMessage, error)

// UpcastFunc builds an Upcaster from a function between two Go shapes of a
// payload, usually the old version's struct (kept for this purpose) and
// the next one's.
func UpcastFunc[From, To any](f func(From) (To, error)) Upcaster {
	return func(payload json.RawMessage) (json.RawMessage, error) {
		if isNull(payload) {
			return nil, errNull
		}
		var from From
		if err := json.Unmarshal(payload, &from); err != nil {
			return nil, err
		}
		to, err := f(from)
		if err != nil {
			return nil, err
		}
		return json.Marshal(to)
	}
}

// errNull: encoding/json decodes null into a zero value without an error.
var errNull = errors.New("payload is null")

func isNull(payload json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(payload), []byte("null"))
}

// decodeJSON decodes one JSON value into v: not null (encoding/json would
// leave a silent zero value), nothing after it, and without allowUnknown
// no field v does not have. Events and snapshot states decode alike.
func decodeJSON(data []byte, v any, allowUnknown bool) error {
	if isNull(data) {
		return errNull
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if !allowUnknown {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// Event is a typed event: the stored event, with its payload bytes as
// stored and the schema version it was written with, and its value decoded
// (after upcasting) into the registered Go type.
type Event[E any] struct {
	RecordedEvent
	Data E
}

// Tagger is implemented by event values that know their DCB tags; Encode
// uses them as the event's tags.
type Tagger interface {
	EventTags() []string
}

// CodecConfig configures a Codec; the zero value is the documented default.
type CodecConfig struct {
	// AllowUnknownFields accepts payloads with fields the registered type
	// does not have (dropped on decode). Default false: such a payload is
	// an ErrEventSchemaMismatch, because a field the type does not know is
	// usually a field it lost without an upcaster.
	AllowUnknownFields bool
}

// Codec maps Go types to event types and schema versions. E is the type
// every decoded value has: an interface the event types implement (a sum
// type of one aggregate's or one module's events), or any.
//
// Register types and upcasters at start-up; after that a Codec is safe for
// concurrent use.
type Codec[E any] struct {
	cfg    CodecConfig
	mu     sync.RWMutex
	byName map[string]*codecType
	byGo   map[reflect.Type]*codecType
}

type codecType struct {
	name      string
	version   int
	goType    reflect.Type
	upcasters map[int]Upcaster // from version v to v+1
}

// NewCodec returns an empty codec; cfg may be nil.
func NewCodec[E any](cfg *CodecConfig) *Codec[E] {
	c := &Codec[E]{byName: map[string]*codecType{}, byGo: map[reflect.Type]*codecType{}}
	if cfg != nil {
		c.cfg = *cfg
	}
	return c
}

// Register binds the Go type T to the event type typeName at its current
// schema version (1 for a type that never changed). T must be a distinct
// type for each name and must implement E. Events of older versions need
// an upcaster for each step (Codec.Upcast).
func Register[T, E any](c *Codec[E], typeName string, version int) error {
	goType := reflect.TypeFor[T]()
	if goType.Kind() == reflect.Interface {
		return fmt.Errorf("register %q: %v is an interface; register the concrete type", typeName, goType)
	}
	var zero T
	if _, ok := any(zero).(E); !ok {
		return fmt.Errorf("register %q: %T does not implement %v", typeName, zero, reflect.TypeFor[E]())
	}
	if typeName == "" || len(typeName) > 200 || typeName[0] == '$' {
		return invalid(-1, "register %q: an event type is 1-200 characters, not starting with \"$\"", typeName)
	}
	if version < 1 || version > maxSchemaVersion {
		return invalid(-1, "register %q: schema version %d is not between 1 and %d", typeName, version, maxSchemaVersion)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct, ok := c.byName[typeName]; ok && ct.goType != nil {
		return fmt.Errorf("register %q: already registered as %v", typeName, ct.goType)
	}
	if ct, ok := c.byGo[goType]; ok {
		return fmt.Errorf("register %v: already registered as %q", goType, ct.name)
	}
	ct := c.entry(typeName)
	for from := range ct.upcasters {
		if from >= version {
			return fmt.Errorf("register %q at version %d: an upcaster from version %d exists", typeName, version, from)
		}
	}
	ct.goType, ct.version = goType, version
	c.byGo[goType] = ct
	return nil
}

// Upcast registers f to turn typeName's payloads of schema version from
// into version from+1. Upcasters run on read, in a chain up to the
// registered version; stored events are never rewritten.
func (c *Codec[E]) Upcast(typeName string, from int, f Upcaster) error {
	if from < 1 || f == nil {
		return invalid(-1, "upcast %q: the version to upcast from must be at least 1 and the upcaster set", typeName)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ct := c.entry(typeName)
	if ct.goType != nil && from >= ct.version {
		return fmt.Errorf("upcast %q from version %d: the registered version is %d", typeName, from, ct.version)
	}
	if _, ok := ct.upcasters[from]; ok {
		return fmt.Errorf("upcast %q from version %d: already registered", typeName, from)
	}
	ct.upcasters[from] = f
	return nil
}

// entry returns typeName's entry, created on first use by Register or
// Upcast (either may come first); c.mu must be held.
func (c *Codec[E]) entry(typeName string) *codecType {
	ct := c.byName[typeName]
	if ct == nil {
		ct = &codecType{name: typeName, upcasters: map[int]Upcaster{}}
		c.byName[typeName] = ct
	}
	return ct
}

// Encode turns a registered value into an event to append, with its type
// name, current schema version and, if v implements Tagger, its tags. Set
// Metadata (see CausedBy) or ID on the result as needed.
func (c *Codec[E]) Encode(v E) (EventData, error) {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() == reflect.Pointer && rv.IsNil() {
		return EventData{}, invalid(-1, "encode: a nil %T is no event", v)
	}
	c.mu.RLock()
	ct := c.byGo[rv.Type()]
	c.mu.RUnlock()
	if ct == nil {
		return EventData{}, fmt.Errorf("%w: no event type is registered for %v", ErrUnknownEventType, rv.Type())
	}
	payload, err := json.Marshal(v)
	if err != nil {
		return EventData{}, fmt.Errorf("encode %q: %w", ct.name, err)
	}
	ed := EventData{Type: ct.name, Payload: payload, SchemaVersion: ct.version}
	if t, ok := any(v).(Tagger); ok {
		ed.Tags = t.EventTags()
	}
	return ed, nil
}

// EncodeAll encodes values in order, or fails on the first that does not.
func (c *Codec[E]) EncodeAll(vs ...E) ([]EventData, error) {
	out := make([]EventData, len(vs))
	for i, v := range vs {
		var err error
		if out[i], err = c.Encode(v); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	return out, nil
}

// Decode upcasts a stored event's payload to the registered schema version
// and decodes it. Failures are *DecodeError; the returned event then holds
// the stored event and a zero Data.
func (c *Codec[E]) Decode(ev RecordedEvent) (Event[E], error) {
	out := Event[E]{RecordedEvent: ev}
	fail := func(kind, err error) (Event[E], error) {
		return out, &DecodeError{TenantID: ev.TenantID, Position: ev.Position, Type: ev.Type, SchemaVersion: ev.SchemaVersion, Kind: kind, Err: err}
	}
	// The chain is collected under the lock: Upcast may run meanwhile.
	c.mu.RLock()
	ct := c.byName[ev.Type]
	var goType reflect.Type
	var chain []Upcaster
	current := 0
	if ct != nil {
		goType, current = ct.goType, ct.version
		for v := max(ev.SchemaVersion, 1); v < current; v++ {
			chain = append(chain, ct.upcasters[v])
		}
	}
	c.mu.RUnlock()
	switch {
	case goType == nil:
		return fail(ErrUnknownEventType, nil)
	case ev.SchemaVersion < 1:
		return fail(ErrUnknownSchemaVersion, errors.New("the stored schema_version is not an integer from 1 to 999999999"))
	case ev.SchemaVersion > current:
		return fail(ErrUnknownSchemaVersion, fmt.Errorf("the registered version is %d", current))
	}
	payload := ev.Payload
	for i, up := range chain {
		v := ev.SchemaVersion + i
		if up == nil {
			return fail(ErrUnknownSchemaVersion, fmt.Errorf("no upcaster from version %d to %d", v, v+1))
		}
		next, err := up(payload)
		if err != nil {
			return fail(ErrEventSchemaMismatch, fmt.Errorf("upcast from version %d: %w", v, err))
		}
		payload = next
	}
	ptr := reflect.New(goType)
	if err := decodeJSON(payload, ptr.Interface(), c.cfg.AllowUnknownFields); err != nil {
		return fail(ErrEventSchemaMismatch, err)
	}
	out.Data = ptr.Elem().Interface().(E) // Register checked that T implements E
	return out, nil
}

// DecodeAll decodes events in order: all of them, or none and the first
// failure.
func (c *Codec[E]) DecodeAll(events []RecordedEvent) ([]Event[E], error) {
	out := make([]Event[E], len(events))
	for i, ev := range events {
		var err error
		if out[i], err = c.Decode(ev); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Events decodes a sequence of stored events (TenantStore.IterateStream, a
// ReadResult's Events); it stops after the first error, which it yields
// with the stored event (zero if the read failed) and a zero Data.
func (c *Codec[E]) Events(seq iter.Seq2[RecordedEvent, error]) iter.Seq2[Event[E], error] {
	return func(yield func(Event[E], error) bool) {
		for ev, err := range seq {
			if err != nil {
				yield(Event[E]{RecordedEvent: ev}, err)
				return
			}
			typed, err := c.Decode(ev)
			if !yield(typed, err) || err != nil {
				return
			}
		}
	}
}

// Handler adapts a typed handler to a subscription. An event that does not
// decode fails without retries, since a retry decodes the same bytes: the
// subscription's OnFailure applies at once (stop, or park the event as a
// dead letter). During a rolling deploy, where writers may ship a type or
// field before the readers know it, StopOnFailure (the default) waits for
// the new readers; ParkOnFailure would park such events.
func (c *Codec[E]) Handler(h func(ctx context.Context, tx pgx.Tx, ev Event[E]) error) Handler {
	return func(ctx context.Context, tx pgx.Tx, ev RecordedEvent) error {
		typed, err := c.Decode(ev)
		if err != nil {
			return err
		}
		return h(ctx, tx, typed)
	}
}

// Apply adapts a typed fold to Aggregate.Apply (or to Project): each event
// is decoded, and a failure to decode fails the whole load.
func Apply[S, E any](c *Codec[E], f func(S, Event[E]) (S, error)) func(S, RecordedEvent) (S, error) {
	return func(s S, ev RecordedEvent) (S, error) {
		typed, err := c.Decode(ev)
		if err != nil {
			return s, err
		}
		return f(s, typed)
	}
}
