package pges

import (
	"context"
	"encoding/json"
	"fmt"
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
	err := t.store.queries.SaveSnapshot(ctx, t.store.pool, db.SaveSnapshotParams{
		TenantID: t.tenantID, StreamID: streamID, StreamVersion: version, SchemaVersion: int32(schemaVersion), State: state,
	})
	return translate(err, streamID)
}

// LoadSnapshot returns the stream's latest snapshot, or ok false if none.
func (t *TenantStore) LoadSnapshot(ctx context.Context, streamID string) (snap Snapshot, ok bool, err error) {
	rows, err := t.store.queries.LoadSnapshot(ctx, t.store.pool, db.LoadSnapshotParams{TenantID: t.tenantID, StreamID: streamID})
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
	// Apply folds one event into the state.
	Apply func(S, RecordedEvent) (S, error)
	// SchemaVersion is the current version of S's snapshot encoding (JSON).
	SchemaVersion int
	// Upgrade, if set, is offered snapshots of another schema version; it
	// returns the state and true to use it, or false to ignore the snapshot
	// and replay the stream from the start. Without Upgrade such snapshots
	// are ignored.
	Upgrade func(schemaVersion int, state json.RawMessage) (S, bool, error)
}

// LoadAggregate rebuilds a stream's state from its latest usable snapshot
// plus the events after it, and returns the state and the stream version it
// reflects.
func LoadAggregate[S any](ctx context.Context, t *TenantStore, streamID string, a Aggregate[S]) (S, int64, error) {
	state := a.Init()
	var version int64
	snap, ok, err := t.LoadSnapshot(ctx, streamID)
	if err != nil {
		return state, 0, err
	}
	if ok {
		switch {
		case snap.SchemaVersion == a.SchemaVersion:
			var s S
			if err := json.Unmarshal(snap.State, &s); err != nil {
				return state, 0, fmt.Errorf("snapshot of %q at version %d: %w", streamID, snap.StreamVersion, err)
			}
			state, version = s, snap.StreamVersion
		case a.Upgrade != nil:
			s, use, err := a.Upgrade(snap.SchemaVersion, snap.State)
			if err != nil {
				return a.Init(), 0, fmt.Errorf("upgrade snapshot of %q from schema %d: %w", streamID, snap.SchemaVersion, err)
			}
			if use {
				state, version = s, snap.StreamVersion
			}
		}
	}
	for e, err := range t.IterateStream(ctx, streamID, version+1) {
		if err != nil {
			return a.Init(), 0, err
		}
		if state, err = a.Apply(state, e); err != nil {
			return a.Init(), 0, fmt.Errorf("apply %s at version %d of %q: %w", e.Type, e.StreamVersion, streamID, err)
		}
		version = e.StreamVersion
	}
	return state, version, nil
}

// SaveAggregateSnapshot stores state (as JSON) as the stream's snapshot at
// version, with the aggregate's current schema version.
func SaveAggregateSnapshot[S any](ctx context.Context, t *TenantStore, streamID string, a Aggregate[S], version int64, state S) error {
	b, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	return t.SaveSnapshot(ctx, streamID, version, a.SchemaVersion, b)
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
