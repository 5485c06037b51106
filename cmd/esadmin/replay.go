package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// errInterrupted ends a command stopped by Ctrl-C (exit code 130).
var errInterrupted = errors.New("interrupted")

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "write a tenant's, a stream's or a query's events over a position or time range to stdout as JSON Lines",
		UsageText: `esadmin replay -t acme > acme.jsonl
   esadmin replay -t acme --stream order-1 --since 2026-11-01T00:00:00Z
   esadmin replay -t acme --tag course:c1 --after 1200 --until 5000
   esadmin replay -t acme --rewind projector --since 2026-11-01T00:00:00Z`,
		Description: "Shows a progress bar with rate and ETA on stderr when it is a terminal; quiet when piped. Ctrl-C stops cleanly (exit code 130). " +
			"With --rewind NAME it writes nothing and instead moves subscription NAME's checkpoint back so that its consumer delivers the events " +
			"after --after (or since --since; neither: all) again, to rebuild its projection.",
		Flags: []cli.Flag{
			tenantFlag(),
			&cli.StringFlag{Name: "stream", Usage: "only this stream"},
			typeFlag(), tagFlag(),
			&cli.Int64Flag{Name: "after", Usage: "only events with a greater position"},
			&cli.Int64Flag{Name: "until", Usage: "only events up to this position (0: the head)"},
			&cli.TimestampFlag{Name: "since", Layout: time.RFC3339, Usage: "only events recorded at or after this time (RFC 3339)"},
			&cli.TimestampFlag{Name: "before", Layout: time.RFC3339, Usage: "only events recorded before this time (RFC 3339)"},
			&cli.StringFlag{Name: "rewind", Usage: "rewind this subscription to --after or --since instead of writing events"},
		},
		Action: func(c *cli.Context) error {
			if name := c.String("rewind"); name != "" {
				if c.IsSet("stream") || c.IsSet("type") || c.IsSet("tag") || c.IsSet("until") || c.IsSet("before") {
					return usagef("--rewind takes only --after or --since: a subscription keeps its own filter")
				}
				from := int64(0)
				if after := c.Int64("after"); after > 0 {
					from = after + 1
				}
				return rewind(c, name, from, c.Timestamp("since"))
			}
			stream, query, err := streamOrQuery(c)
			if err != nil {
				return err
			}
			after, until := c.Int64("after"), c.Int64("until")
			if after < 0 || until < 0 {
				return usagef("--after and --until must not be negative")
			}
			var since, before time.Time
			if t := c.Timestamp("since"); t != nil {
				since = *t
			}
			if t := c.Timestamp("before"); t != nil {
				before = *t
			}
			return withTenant(c, func(ts *pges.TenantStore) error {
				events, total, err := replaySource(c.Context, ts, stream, query, after, until)
				if err != nil {
					return err
				}
				bar := progress(c.App.ErrWriter, total)
				enc := json.NewEncoder(c.App.Writer)
				written := 0
				for e, err := range events {
					if err != nil {
						if c.Context.Err() != nil {
							return fmt.Errorf("%w after %d events", errInterrupted, written)
						}
						return err
					}
					if until > 0 && e.Position > until {
						break
					}
					_ = bar.Add(1)
					// recorded_at is the appending transaction's start time, so
					// it is not ordered by position: time bounds filter.
					if e.Position <= after || (!since.IsZero() && e.RecordedAt.Before(since)) ||
						(!before.IsZero() && !e.RecordedAt.Before(before)) {
						continue
					}
					if err := enc.Encode(e); err != nil {
						return err
					}
					written++
				}
				_ = bar.Finish()
				if c.Context.Err() != nil {
					return fmt.Errorf("%w after %d events", errInterrupted, written)
				}
				return nil
			})
		},
	}
}

// replaySource picks the events to replay and how many there are (for the
// progress bar's ETA).
func replaySource(ctx context.Context, ts *pges.TenantStore, stream string, q pges.Query, after, until int64) (iter.Seq2[pges.RecordedEvent, error], int64, error) {
	if stream != "" {
		version, _, err := ts.StreamVersion(ctx, stream)
		return ts.IterateStream(ctx, stream, 0), version, err
	}
	res, err := ts.Read(ctx, q, pges.QueryOptions{After: after})
	if err != nil {
		return nil, 0, err
	}
	upto := res.Head
	if until > 0 {
		upto = min(upto, until)
	}
	total, err := ts.Count(ctx, q, after, upto)
	return res.Events, total, err
}

// progress returns a progress bar on w if w is a terminal, else one that
// prints nothing.
func progress(w io.Writer, total int64) *progressbar.ProgressBar {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return progressbar.NewOptions64(total, progressbar.OptionSetWriter(w), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"), progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	return progressbar.DefaultSilent(total)
}
