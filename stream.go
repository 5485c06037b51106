package pges

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"

	"github.com/eventstore-go/pges/db"
)

// AppendToStream appends events to a stream atomically in one round trip,
// if the stream's version matches expected. Retrying with the same event ids
// returns the first result and writes nothing.
func (t *TenantStore) AppendToStream(ctx context.Context, streamID string, expected ExpectedVersion, events ...EventData) (AppendResult, error) {
	if err := checkStreamID(streamID); err != nil {
		return AppendResult{}, err
	}
	batch, err := encodeBatch(events)
	if err != nil {
		return AppendResult{}, err
	}
	arg := db.AppendToStreamParams{TenantID: t.tenantID, StreamID: streamID, ExpectedVersion: int64(expected), Events: batch}
	for attempt := 0; ; attempt++ {
		row, err := t.store.queries.AppendToStream(ctx, t.conn(), arg)
		if err == nil {
			return AppendResult{StreamVersion: row.StreamVersion, Positions: row.Positions}, nil
		}
		// A unique violation is about the ids (appended before: a retry
		// gets its first result, a reuse elsewhere ErrEventIDConflict), or,
		// rarely since appends to a stream queue (migrations/00012), about
		// the version: running again reports the actual version, or, for Any
		// and StreamExists, appends at the next one.
		if isUniqueViolation(err) {
			if found, ferr := t.findAppended(ctx, streamID, batch); ferr != nil || found != nil {
				if ferr != nil {
					return AppendResult{}, ferr
				}
				return *found, nil
			}
		}
		// ErrStreamOrder: a transaction with a larger id appended to the
		// stream first; a new transaction (a new, larger id) appends after
		// it, with the same expected version. A caller's transaction keeps
		// its id: the error is the caller's to retry.
		if isStreamOrder(err) && t.tx == nil && attempt < t.store.config.AnyVersionRetries {
			continue
		}
		// A deadlock with a caller's transaction that holds a boundary's
		// locks (a Read or conditional Append in a TenantTx) and then
		// appends to this stream: PostgreSQL failed ours; its own
		// transaction can run again (the ids keep it idempotent).
		if isDeadlock(err) && t.tx == nil && attempt < t.store.config.AnyVersionRetries {
			continue
		}
		retryable := expected == Any || expected == StreamExists
		if !isUniqueViolation(err) || (!retryable && attempt > 0) || attempt >= t.store.config.AnyVersionRetries {
			if isUniqueViolation(err) {
				return AppendResult{}, &WrongExpectedVersionError{StreamID: streamID, Expected: expected, Actual: -1}
			}
			return AppendResult{}, translate(err, streamID)
		}
	}
}

// DeleteStream soft-deletes a stream: a tombstone event is appended, the
// events stay in the log, and later reads and appends fail with
// ErrStreamDeleted. Deleting a deleted stream is not an error. expected may
// be Any, StreamExists or an exact version. Returns the tombstone's version.
func (t *TenantStore) DeleteStream(ctx context.Context, streamID string, expected ExpectedVersion) (int64, error) {
	if err := checkStreamID(streamID); err != nil {
		return 0, err
	}
	v, err := t.store.queries.DeleteStream(ctx, t.conn(), db.DeleteStreamParams{
		TenantID: t.tenantID, StreamID: streamID, ExpectedVersion: int64(expected),
	})
	if isUniqueViolation(err) {
		return 0, &WrongExpectedVersionError{StreamID: streamID, Expected: expected, Actual: -1}
	}
	return v, translate(err, streamID)
}

// StreamVersion returns a stream's current version (0: no events) and
// whether it is deleted.
func (t *TenantStore) StreamVersion(ctx context.Context, streamID string) (version int64, deleted bool, err error) {
	row, err := t.store.queries.StreamHead(ctx, t.conn(), db.StreamHeadParams{TenantID: t.tenantID, StreamID: streamID})
	return row.Version, row.Deleted, translate(err, streamID)
}

// ReadOptions selects part of a stream.
type ReadOptions struct {
	// From is the first version to return (inclusive). 0 means the start
	// forwards and the end backwards.
	From int64
	// Limit caps the events returned; 0 means the store's ReadPageSize.
	Limit int
	// Backwards reads from From towards version 1.
	Backwards bool
}

// ReadStream returns up to opts.Limit events of a stream in version order.
// It fails with ErrStreamNotFound or ErrStreamDeleted.
func (t *TenantStore) ReadStream(ctx context.Context, streamID string, opts ReadOptions) ([]RecordedEvent, error) {
	if opts.From < 0 || opts.Limit < 0 {
		return nil, invalid(-1, "read options: From and Limit must not be negative")
	}
	limit := opts.Limit
	if limit == 0 {
		limit = t.store.config.ReadPageSize
	}
	from := opts.From
	if opts.Backwards && from == 0 {
		from = -1
	}
	rows, err := t.store.queries.ReadStream(ctx, t.conn(), db.ReadStreamParams{
		TenantID: t.tenantID, StreamID: streamID, FromVersion: from, MaxCount: int32(min(limit, 1<<30)), Backwards: opts.Backwards,
	})
	if err != nil {
		return nil, translate(err, streamID)
	}
	out := make([]RecordedEvent, len(rows))
	for i, r := range rows {
		if out[i], err = recordedFromRow(t.tenantID, r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// IterateStream yields a stream's events from version from (0: the start)
// in order, fetching ReadPageSize events per round trip, so streams of any
// length are read in constant memory. It stops at the first error.
func (t *TenantStore) IterateStream(ctx context.Context, streamID string, from int64) iter.Seq2[RecordedEvent, error] {
	return func(yield func(RecordedEvent, error) bool) {
		next := max(from, 1)
		for {
			page, err := t.ReadStream(ctx, streamID, ReadOptions{From: next})
			if err != nil {
				yield(RecordedEvent{}, err)
				return
			}
			for _, e := range page {
				if !yield(e, nil) {
					return
				}
			}
			if len(page) < t.store.config.ReadPageSize {
				return
			}
			next = page[len(page)-1].StreamVersion + 1
		}
	}
}

func recordedFromRow(tenantID string, r db.ReadStreamRow) (RecordedEvent, error) {
	e := RecordedEvent{
		Position:      r.Position,
		ID:            r.EventID,
		Type:          r.EventType,
		StreamID:      r.StreamID.String,
		StreamVersion: r.StreamVersion.Int64,
		Payload:       json.RawMessage(r.Payload),
		Tags:          r.Tags,
		RecordedAt:    r.RecordedAt.Time,
		SchemaVersion: 1,
		TenantID:      tenantID,
	}
	// The common cases, without a trip through encoding/json: no metadata,
	// or only a codec's schema version (jsonb prints it in this form).
	if string(r.Metadata) == "{}" {
		return e, nil
	}
	if v, ok := bytes.CutPrefix(r.Metadata, []byte(`{"schema_version": `)); ok && len(v) > 1 && len(v) <= 10 && v[len(v)-1] == '}' {
		n, digits := 0, v[:len(v)-1]
		for _, c := range digits {
			if c < '0' || c > '9' {
				n = -1
				break
			}
			n = n*10 + int(c-'0')
		}
		if n >= 0 {
			e.SchemaVersion = schemaVersion(float64(n))
			return e, nil
		}
	}
	var w struct {
		Metadata
		SchemaVersion json.RawMessage `json:"schema_version"`
	}
	if err := json.Unmarshal(r.Metadata, &w); err != nil {
		return e, fmt.Errorf("tenant %q, event at position %d: metadata: %w", tenantID, r.Position, err)
	}
	e.Metadata = w.Metadata
	if w.SchemaVersion != nil {
		// Not a number (a string, null) gives 0, as a bad number does.
		v, _ := strconv.ParseFloat(string(w.SchemaVersion), 64)
		e.SchemaVersion = schemaVersion(v)
	}
	return e, nil
}

// schemaVersion maps a stored metadata.schema_version to
// RecordedEvent.SchemaVersion: 0 if it is not an integer from 1 to
// maxSchemaVersion, as es.event_schema_version returns NULL. Only a SQL
// client could have stored such a value, before migration 00008; the
// event still reads, and a Codec refuses to decode it.
func schemaVersion(v float64) int {
	if v < 1 || v > maxSchemaVersion || v != float64(int(v)) {
		return 0
	}
	return int(v)
}
