package pges

import (
	"context"
	"fmt"
	"time"
)

// AsOf bounds a temporal read: the state as it was at a stream version, a
// log position or a point in time. Set at most one field; the zero AsOf
// reads everything (now).
type AsOf struct {
	// Version: a stream's events up to and including this version
	// (streams only).
	Version int64
	// Position: events at or below this log position.
	Position int64
	// Time: events recorded at or before this time. An event's recorded
	// time is its appending transaction's start (now() in PostgreSQL), so
	// a bound between two concurrent appends keeps the one that began
	// first even if it committed, or was numbered, later.
	Time time.Time
}

func (at AsOf) check(stream bool) error {
	set := 0
	for _, b := range []bool{at.Version != 0, at.Position != 0, !at.Time.IsZero()} {
		if b {
			set++
		}
	}
	switch {
	case at.Version < 0 || at.Position < 0:
		return invalid(-1, "as of: Version and Position must not be negative")
	case set > 1:
		return invalid(-1, "as of: set one of Version, Position and Time, not %d", set)
	case at.Version != 0 && !stream:
		return invalid(-1, "as of: Version bounds stream reads only; use Position or Time")
	}
	return nil
}

// includes reports whether ev is within the bound, and whether any later
// event of the same read can be (reads go in position order, and a stream's
// positions grow with its versions: both are drawn under the stream's lock).
func (at AsOf) includes(ev RecordedEvent) (in, more bool) {
	switch {
	case at.Version != 0:
		return ev.StreamVersion <= at.Version, ev.StreamVersion < at.Version
	case at.Position != 0:
		return ev.Position <= at.Position, ev.Position < at.Position
	case !at.Time.IsZero():
		return !ev.RecordedAt.After(at.Time), true
	}
	return true, true
}

// LoadAggregateAsOf rebuilds a stream's state as of at and returns it with
// the version of the last event applied. A Version bound starts from the
// latest usable snapshot at or below it; Position and Time bounds replay
// from the stream's start, since a snapshot's version tells neither.
func LoadAggregateAsOf[S any](ctx context.Context, h TenantHandle, streamID string, a Aggregate[S], at AsOf) (S, int64, error) {
	t := h.tenantStore()
	state := a.Init()
	if err := at.check(true); err != nil {
		return state, 0, err
	}
	var version int64
	if at.Position == 0 && at.Time.IsZero() {
		upto := at.Version
		if upto == 0 {
			upto = 1<<63 - 1
		}
		snap, ok, err := t.LoadSnapshotAt(ctx, streamID, upto)
		if err != nil {
			return state, 0, err
		}
		if ok {
			if s, err := a.fromSnapshot(snap); err != nil {
				if a.OnSnapshotIgnored != nil {
					a.OnSnapshotIgnored(streamID, snap, err)
				}
			} else {
				state, version = s, snap.StreamVersion
			}
		}
	}
	if at.Version != 0 && version >= at.Version {
		return state, version, nil
	}
	for e, err := range t.IterateStream(ctx, streamID, version+1) {
		if err != nil {
			return a.Init(), 0, err
		}
		in, more := at.includes(e)
		if in {
			if state, err = a.Apply(state, e); err != nil {
				return a.Init(), 0, fmt.Errorf("apply %s at version %d of %q: %w", e.Type, e.StreamVersion, streamID, err)
			}
			version = e.StreamVersion
		}
		if !more {
			break
		}
	}
	return state, version, nil
}

// Project folds the events matching a DCB query, in position order, into
// a state: a decision model, starting from init(). It returns the state
// and the head to append after, AppendCondition{FailIfEventsMatch: q,
// After: head}. With at set it returns the state as of then: for looking
// back, not for appending. Under a Position bound the head is the bound,
// or the read's head if that is lower (a position beyond it could still be
// taken by an append in flight); under a Time bound it is the read's head.
// A failed apply returns init(), never a partial state.
func Project[S any](ctx context.Context, h TenantHandle, q Query, init func() S, apply func(S, RecordedEvent) (S, error), at AsOf) (S, int64, error) {
	t := h.tenantStore()
	if err := at.check(false); err != nil {
		return init(), 0, err
	}
	res, err := t.Read(ctx, q, QueryOptions{})
	if err != nil {
		return init(), 0, err
	}
	state, head := init(), res.Head
	if at.Position != 0 {
		head = min(head, at.Position)
	}
	for e, err := range res.Events {
		if err != nil {
			return init(), 0, err
		}
		in, more := at.includes(e)
		if in {
			if state, err = apply(state, e); err != nil {
				return init(), 0, fmt.Errorf("apply %s at position %d: %w", e.Type, e.Position, err)
			}
		}
		if !more {
			break
		}
	}
	return state, head, nil
}
