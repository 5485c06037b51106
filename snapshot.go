package pges

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/eventstore-go/pges/db"
	"github.com/jackc/pgx/v5/pgtype"
)

// Snapshot is a stored state of a stream at a version.
type Snapshot struct {
	StreamVersion int64
	SchemaVersion int
	State         json.RawMessage
	CreatedAt     time.Time
}

// SaveSnapshot stores state as the stream's snapshot at version. The version
// must exist in the stream; saving the same version again replaces it.
func (t *TenantStore) SaveSnapshot(ctx context.Context, streamID string, version int64, schemaVersion int, state json.RawMessage) error {
	if !json.Valid(state) {
		return invalid(-1, "snapshot state is not valid JSON")
	}
	err := t.store.queries.SaveSnapshot(ctx, t.conn(), db.SaveSnapshotParams{
		TenantID: t.tenantID, StreamID: streamID, StreamVersion: version, SchemaVersion: int32(schemaVersion), State: state,
	})
	return translate(err, streamID)
}

// LoadSnapshot returns the stream's latest snapshot, or ok false if none.
func (t *TenantStore) LoadSnapshot(ctx context.Context, streamID string) (snap Snapshot, ok bool, err error) {
	return t.LoadSnapshotAt(ctx, streamID, math.MaxInt64)
}

// LoadSnapshotAt returns the stream's latest snapshot at or below version
// maxVersion, or ok false if none.
func (t *TenantStore) LoadSnapshotAt(ctx context.Context, streamID string, maxVersion int64) (snap Snapshot, ok bool, err error) {
	rows, err := t.store.queries.LoadSnapshotUpto(ctx, t.conn(), db.LoadSnapshotUptoParams{TenantID: t.tenantID, StreamID: streamID, MaxVersion: maxVersion})
	if err != nil || len(rows) == 0 {
		return Snapshot{}, false, translate(err, streamID)
	}
	r := rows[0]
	return Snapshot{StreamVersion: r.StreamVersion, SchemaVersion: int(r.SchemaVersion), State: r.State, CreatedAt: r.CreatedAt.Time}, true, nil
}

// Aggregate describes how to rebuild a state S from a stream.
type Aggregate[S any] struct {
	// Init returns the state before the first event.
	Init func() S
	// Apply folds one event into the state (see Apply for typed events).
	Apply func(S, RecordedEvent) (S, error)
	// SchemaVersion is the current version of S's snapshot encoding (JSON);
	// 0 counts as 1.
	SchemaVersion int
	// SnapshotUpcasters turn a snapshot's state of schema version v (the
	// key) into version v+1. An older snapshot is upcast through the chain.
	// A snapshot the chain cannot bring to SchemaVersion (a missing step, a
	// newer version, a failed upcaster, a state that does not decode into
	// S) is ignored and the stream replayed from its start: a snapshot is a
	// cache, never a reason to fail a load.
	SnapshotUpcasters map[int]Upcaster
	// OnSnapshotIgnored, if set, is told of every ignored snapshot and why.
	OnSnapshotIgnored func(streamID string, snap Snapshot, reason error)
}

// LoadAggregate rebuilds a stream's state from its latest usable snapshot
// plus the events after it, and returns the state and the stream version it
// reflects. LoadAggregateAsOf rebuilds an earlier state.
func LoadAggregate[S any](ctx context.Context, t TenantHandle, streamID string, a Aggregate[S]) (S, int64, error) {
	return LoadAggregateAsOf(ctx, t, streamID, a, AsOf{})
}

// fromSnapshot decodes a snapshot into S, upcasting it first if needed.
func (a Aggregate[S]) fromSnapshot(snap Snapshot) (S, error) {
	var s S
	current := max(a.SchemaVersion, 1)
	if snap.SchemaVersion > current {
		return s, fmt.Errorf("schema version %d is newer than the aggregate's %d", snap.SchemaVersion, current)
	}
	state := snap.State
	// Before schema versions were checked, an Aggregate without one saved
	// its snapshots as version 0: they are version 1.
	for v := max(snap.SchemaVersion, 1); v < current; v++ {
		up := a.SnapshotUpcasters[v]
		if up == nil {
			return s, fmt.Errorf("no snapshot upcaster from schema version %d to %d", v, v+1)
		}
		next, err := up(state)
		if err != nil {
			return s, fmt.Errorf("upcast from schema version %d: %w", v, err)
		}
		state = next
	}
	// Strict: a field S lost means the state is not S's.
	if err := decodeJSON(state, &s, false); err != nil {
		return s, fmt.Errorf("decode state: %w", err)
	}
	return s, nil
}

// SaveAggregateSnapshot stores state (as JSON) as the stream's snapshot at
// version, with the aggregate's current schema version.
func SaveAggregateSnapshot[S any](ctx context.Context, t TenantHandle, streamID string, a Aggregate[S], version int64, state S) error {
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	return t.tenantStore().SaveSnapshot(ctx, streamID, version, max(a.SchemaVersion, 1), b)
}

// SnapshotInfo describes a stored snapshot without its state.
type SnapshotInfo struct {
	StreamID      string    `json:"stream_id"`
	StreamVersion int64     `json:"stream_version"`
	SchemaVersion int       `json:"schema_version"`
	Bytes         int       `json:"bytes"`
	CreatedAt     time.Time `json:"created_at"`
}

// ListSnapshots lists the tenant's snapshots of one stream, or of every
// stream when streamID is "".
func (t *TenantStore) ListSnapshots(ctx context.Context, streamID string) ([]SnapshotInfo, error) {
	arg := db.ListSnapshotsParams{TenantID: t.tenantID}
	if streamID != "" {
		arg.StreamID = pgtype.Text{String: streamID, Valid: true}
	}
	rows, err := t.store.queries.ListSnapshots(ctx, t.store.pool, arg)
	if err != nil {
		return nil, translate(err, streamID)
	}
	out := make([]SnapshotInfo, len(rows))
	for i, r := range rows {
		out[i] = SnapshotInfo{StreamID: r.StreamID, StreamVersion: r.StreamVersion, SchemaVersion: int(r.SchemaVersion), Bytes: int(r.Bytes), CreatedAt: r.CreatedAt.Time}
	}
	return out, nil
}

// DeleteSnapshots deletes a stream's snapshot at version, or all of its
// snapshots when version is 0, and returns how many it deleted.
func (t *TenantStore) DeleteSnapshots(ctx context.Context, streamID string, version int64) (int64, error) {
	arg := db.DeleteSnapshotsParams{TenantID: t.tenantID, StreamID: streamID}
	if version != 0 {
		arg.Version = pgtype.Int8{Int64: version, Valid: true}
	}
	n, err := t.store.queries.DeleteSnapshots(ctx, t.store.pool, arg)
	return n, translate(err, streamID)
}

// PruneSnapshots keeps the keep latest snapshots of each of the tenant's
// streams, deletes the rest and returns how many it deleted.
func (t *TenantStore) PruneSnapshots(ctx context.Context, keep int) (int64, error) {
	n, err := t.store.queries.PruneSnapshots(ctx, t.store.pool, db.PruneSnapshotsParams{TenantID: t.tenantID, Keep: int32(min(keep, 1<<30))})
	return n, translate(err, "")
}
