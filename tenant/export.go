package tenant

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/db"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The export format: JSON Lines, one record per line, each with a "kind":
// a header, the tenant's events in position order, its snapshots, its
// subscriptions (name, filter, and the id of the last event up to which
// every event had been delivered: transaction ids do not travel between
// databases), and a trailer with the counts an import verifies. Dead
// letters are not exported. Payloads, metadata and states
// are PostgreSQL's own jsonb text, so an export of an import is identical
// but for the header and the positions (drawn anew, in the same order).
const exportFormat = 1

type exportLine struct {
	Kind string `json:"kind"`

	// header
	Format     int       `json:"format,omitempty"`
	Tenant     string    `json:"tenant,omitempty"`
	Name       string    `json:"name,omitempty"`
	ExportedAt time.Time `json:"exported_at,omitzero"`

	// event and snapshot
	Position      int64           `json:"position,omitempty"`
	ID            *uuid.UUID      `json:"id,omitempty"`
	Type          string          `json:"type,omitempty"`
	StreamID      *string         `json:"stream_id,omitempty"`
	StreamVersion *int64          `json:"stream_version,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	Metadata      json.RawMessage `json:"metadata,omitempty"`
	Tags          []string        `json:"tags,omitempty"`
	RecordedAt    time.Time       `json:"recorded_at,omitzero"`
	SchemaVersion *int32          `json:"schema_version,omitempty"`
	State         json.RawMessage `json:"state,omitempty"`
	CreatedAt     time.Time       `json:"created_at,omitzero"`

	// subscription (and Name)
	Filter           json.RawMessage `json:"filter,omitempty"`
	DeliveredThrough *uuid.UUID      `json:"delivered_through,omitempty"`
	// DeadLetters: the events it parked, [{"event_id", "error",
	// "attempts", "parked_at"}]; parked again on import (migration 00013).
	DeadLetters json.RawMessage `json:"dead_letters,omitempty"`

	// trailer; Subscriptions is absent from exports made before
	// subscriptions existed, which hold none.
	Events        *int64 `json:"events,omitempty"`
	Snapshots     *int64 `json:"snapshots,omitempty"`
	Subscriptions *int64 `json:"subscriptions,omitempty"`
}

// ExportResult counts what an export wrote.
type ExportResult struct {
	Events, Snapshots, Subscriptions int64
}

// ErrTenantNotEmpty: an import into a tenant that already holds events or
// snapshots, without ImportOptions.Merge.
var ErrTenantNotEmpty = errors.New("tenant is not empty")

// Export writes one tenant's events and snapshots to w as JSON Lines, in
// pages, so a tenant of any size is exported in constant memory.
func (m *Manager) Export(ctx context.Context, id string, w io.Writer) (ExportResult, error) {
	var res ExportResult
	t, err := m.Get(ctx, id)
	if err != nil {
		return res, err
	}
	// One snapshot for the whole export: paging by position in separate
	// statements could skip an event with a lower position that commits
	// after its page was read (docs/design.md, section 1).
	tx, err := m.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return res, err
	}
	defer tx.Rollback(ctx)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(exportLine{Kind: "header", Format: exportFormat, Tenant: t.ID, Name: t.Name, ExportedAt: time.Now().UTC()}); err != nil {
		return res, err
	}
	for after := int64(0); ; {
		rows, err := m.queries.ExportEvents(ctx, tx, db.ExportEventsParams{TenantID: id, After: after, MaxCount: 1000})
		if err != nil {
			return res, pges.TranslateError(err)
		}
		for _, r := range rows {
			line := exportLine{Kind: "event", Position: r.Position, ID: &r.EventID, Type: r.EventType,
				Payload: json.RawMessage(r.Payload), Metadata: json.RawMessage(r.Metadata), Tags: r.Tags, RecordedAt: r.RecordedAt.Time.UTC()}
			if r.StreamID.Valid {
				line.StreamID, line.StreamVersion = &r.StreamID.String, &r.StreamVersion.Int64
			}
			if err := enc.Encode(line); err != nil {
				return res, err
			}
			res.Events++
			after = r.Position
		}
		if len(rows) < 1000 {
			break
		}
	}
	snaps, err := m.queries.ExportSnapshots(ctx, tx, id)
	if err != nil {
		return res, pges.TranslateError(err)
	}
	for _, s := range snaps {
		if err := enc.Encode(exportLine{Kind: "snapshot", StreamID: &s.StreamID, StreamVersion: &s.StreamVersion,
			SchemaVersion: &s.SchemaVersion, State: json.RawMessage(s.State), CreatedAt: s.CreatedAt.Time.UTC()}); err != nil {
			return res, err
		}
		res.Snapshots++
	}
	subs, err := m.queries.ExportSubscriptions(ctx, tx, id)
	if err != nil {
		return res, pges.TranslateError(err)
	}
	for _, sub := range subs {
		line := exportLine{Kind: "subscription", Name: sub.Name, Filter: json.RawMessage(sub.Filter)}
		if sub.DeadLetters != "[]" {
			line.DeadLetters = json.RawMessage(sub.DeadLetters)
		}
		if sub.DeliveredThrough != "" {
			u, err := uuid.Parse(sub.DeliveredThrough)
			if err != nil {
				return res, err
			}
			line.DeliveredThrough = &u
		}
		if err := enc.Encode(line); err != nil {
			return res, err
		}
		res.Subscriptions++
	}
	if err := enc.Encode(exportLine{Kind: "trailer", Events: &res.Events, Snapshots: &res.Snapshots, Subscriptions: &res.Subscriptions}); err != nil {
		return res, err
	}
	return res, bw.Flush()
}

// ImportOptions configures Import. The zero value imports into the tenant
// named in the export, which must be empty or absent.
type ImportOptions struct {
	// Tenant imports into this tenant instead of the export's.
	Tenant string
	// Merge allows importing into a tenant that already has data; events
	// it already has (same id) are skipped.
	Merge bool
}

// ImportResult counts what an import wrote.
type ImportResult struct {
	Tenant                           string
	Events, Snapshots, Subscriptions int64
	// Skipped counts events a merge left out because the tenant had them.
	Skipped int64
}

// Import reads an export and writes it into a tenant in one transaction:
// the events in their exported order (with positions drawn anew), and the
// counts must match the export's trailer, or nothing is written.
// Subscriptions resume after the last event the source had delivered every
// event up to; those the tenant already has are kept. The tenant
// is created, with the exported name, if it does not exist. While it runs,
// the tenant's appends and reads for a head wait for it.
func (m *Manager) Import(ctx context.Context, r io.Reader, opts ImportOptions) (ImportResult, error) {
	var res ImportResult
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	lineNo := 0
	next := func() (exportLine, bool, error) {
		for sc.Scan() {
			lineNo++
			if len(sc.Bytes()) == 0 {
				continue
			}
			var l exportLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				return l, false, fmt.Errorf("import line %d: %v", lineNo, err)
			}
			return l, true, nil
		}
		return exportLine{}, false, sc.Err()
	}
	header, ok, err := next()
	if err != nil {
		return res, err
	}
	if !ok || header.Kind != "header" || header.Format != exportFormat {
		return res, fmt.Errorf("import: line 1 is not a format %d export header", exportFormat)
	}
	res.Tenant = header.Tenant
	if opts.Tenant != "" {
		res.Tenant = opts.Tenant
	}
	if err := ValidateID(res.Tenant); err != nil {
		return res, err
	}

	tx, err := m.pool.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(ctx)
	// A tenant created here is rolled back with a failed import.
	if _, err := m.queries.GetTenant(ctx, tx, res.Tenant); errors.Is(err, pgx.ErrNoRows) {
		if _, err := m.queries.CreateTenant(ctx, tx, db.CreateTenantParams{TenantID: res.Tenant, Name: header.Name}); err != nil {
			return res, pges.TranslateError(err)
		}
	} else if err != nil {
		return res, pges.TranslateError(err)
	}
	if err := m.queries.LockTenant(ctx, tx, res.Tenant); err != nil {
		return res, pges.TranslateError(err)
	}
	have, err := m.queries.CountTenantRows(ctx, tx, res.Tenant)
	if err != nil {
		return res, pges.TranslateError(err)
	}
	if (have.Events > 0 || have.Snapshots > 0) && !opts.Merge {
		return res, fmt.Errorf("tenant %s holds %d events and %d snapshots: %w (merge to import anyway)", res.Tenant, have.Events, have.Snapshots, ErrTenantNotEmpty)
	}

	var events, snapshots, subscriptions []exportLine
	var eventsRead, snapshotsRead int64
	flush := func() error {
		if len(events) > 0 {
			b, _ := json.Marshal(events)
			n, err := m.queries.ImportEvents(ctx, tx, db.ImportEventsParams{TenantID: res.Tenant, Rows: b, Merge: opts.Merge})
			if err != nil {
				return pges.TranslateError(err)
			}
			res.Events += n
			events = events[:0]
		}
		if len(snapshots) > 0 {
			b, _ := json.Marshal(snapshots)
			n, err := m.queries.ImportSnapshots(ctx, tx, db.ImportSnapshotsParams{TenantID: res.Tenant, Rows: b})
			if err != nil {
				return pges.TranslateError(err)
			}
			res.Snapshots += n
			snapshots = snapshots[:0]
		}
		return nil
	}
	var trailer *exportLine
	for {
		l, ok, err := next()
		if err != nil {
			return res, err
		}
		if !ok {
			break
		}
		if trailer != nil {
			return res, fmt.Errorf("import line %d: data after the trailer", lineNo)
		}
		switch l.Kind {
		case "event":
			events = append(events, l)
			eventsRead++
		case "snapshot":
			snapshots = append(snapshots, l)
			snapshotsRead++
		case "subscription":
			subscriptions = append(subscriptions, l) // few: imported last, once every event is in
		case "trailer":
			trailer = &l
		default:
			return res, fmt.Errorf("import line %d: unknown kind %q", lineNo, l.Kind)
		}
		if len(events)+len(snapshots) >= 1000 {
			if err := flush(); err != nil {
				return res, fmt.Errorf("import near line %d: %w", lineNo, err)
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	if trailer == nil || trailer.Events == nil || trailer.Snapshots == nil {
		return res, errors.New("import: the export has no trailer (truncated?): nothing was imported")
	}
	subsListed := int64(0)
	if trailer.Subscriptions != nil {
		subsListed = *trailer.Subscriptions
	}
	if *trailer.Events != eventsRead || *trailer.Snapshots != snapshotsRead || subsListed != int64(len(subscriptions)) {
		return res, fmt.Errorf("import: the export lists %d events, %d snapshots and %d subscriptions but holds %d, %d and %d: nothing was imported",
			*trailer.Events, *trailer.Snapshots, subsListed, eventsRead, snapshotsRead, len(subscriptions))
	}
	if len(subscriptions) > 0 {
		b, _ := json.Marshal(subscriptions)
		n, err := m.queries.ImportSubscriptions(ctx, tx, db.ImportSubscriptionsParams{TenantID: res.Tenant, Rows: b})
		if err != nil {
			return res, pges.TranslateError(err)
		}
		res.Subscriptions = n
	}
	res.Skipped = eventsRead - res.Events
	if !opts.Merge && res.Skipped != 0 {
		return res, fmt.Errorf("import: %d of %d events were not written: nothing was imported", res.Skipped, eventsRead)
	}
	return res, tx.Commit(ctx)
}
