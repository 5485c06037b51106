package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"
)

// tailCommand follows a tenant's log live through an ephemeral
// subscription (nothing is stored).
func tailCommand() *cli.Command {
	return &cli.Command{
		Name:  "tail",
		Usage: "follow a tenant's events, or a filter's, live (LISTEN/NOTIFY) as JSON Lines until Ctrl-C",
		UsageText: `esadmin events tail -t acme
   esadmin events tail -t acme --type OrderPlaced --stream-prefix order- --from-beginning
   esadmin events tail -t acme --tag course:c1 --limit 10`,
		Description: "Starts at the end of the log (events committed from now on), at --after a position, or with " +
			"--from-beginning. Stops after --limit events, or on Ctrl-C with exit code 130.",
		Flags: append([]cli.Flag{tenantFlag(),
			&cli.BoolFlag{Name: "from-beginning", Usage: "deliver the whole log first"},
			&cli.Int64Flag{Name: "after", Usage: "deliver the events after this position (and possibly a few just before)"},
			&cli.IntFlag{Name: "limit", Usage: "stop after this many events (0: never)"},
		}, filterFlags()...),
		Action: func(c *cli.Context) error {
			filter, err := filterFromFlags(c)
			if err != nil {
				return err
			}
			start := pges.StartAtEnd()
			switch after := c.Int64("after"); {
			case after < 0 || c.Int("limit") < 0:
				return usagef("--after and --limit must not be negative")
			case after > 0 && c.Bool("from-beginning"):
				return usagef("--after and --from-beginning exclude each other")
			case after > 0:
				start = pges.StartAtPosition(after + 1) // like events read --after: P excluded
			case c.Bool("from-beginning"):
				start = pges.StartAtBeginning()
			}
			return withTenant(c, func(ts *pges.TenantStore) error {
				ctx, stop := context.WithCancel(c.Context)
				defer stop()
				enc := json.NewEncoder(c.App.Writer)
				n, limit := 0, c.Int("limit")
				err := ts.Subscribe(ctx, pges.SubscriptionConfig{Filter: filter, Start: start, BatchSize: 100, MaxAttempts: 1,
					Handler: func(_ context.Context, _ pgx.Tx, e pges.RecordedEvent) error {
						if limit > 0 && n >= limit {
							return nil
						}
						if err := enc.Encode(e); err != nil {
							return err
						}
						if n++; n == limit {
							stop()
						}
						return nil
					}})
				switch {
				case err != nil:
					return err
				case c.Context.Err() != nil:
					return fmt.Errorf("%w after %d events", errInterrupted, n)
				}
				return nil
			})
		},
	}
}

// filterFlags select the events of a tail.
func filterFlags() []cli.Flag {
	return []cli.Flag{typeFlag(), &cli.StringSliceFlag{Name: "tag", Usage: "only events carrying all these tags"},
		&cli.StringFlag{Name: "stream", Usage: "only this stream"},
		&cli.StringFlag{Name: "stream-prefix", Usage: "only streams whose id starts with this"}}
}

func filterFromFlags(c *cli.Context) (pges.SubscriptionFilter, error) {
	f := pges.SubscriptionFilter{Types: c.StringSlice("type"), Tags: c.StringSlice("tag"),
		StreamID: c.String("stream"), StreamPrefix: c.String("stream-prefix")}
	if f.StreamID != "" && f.StreamPrefix != "" {
		return f, usagef("--stream and --stream-prefix exclude each other")
	}
	return f, nil
}

func subscriptionCommand() *cli.Command {
	// urfave/cli stops reading flags at the first argument.
	nameArg := func(c *cli.Context) (string, error) {
		switch {
		case c.NArg() > 1 && strings.HasPrefix(c.Args().Get(1), "-"):
			return "", usagef("put the flags before the name: esadmin subscription %s -t TENANT [flags] NAME", c.Command.Name)
		case c.NArg() != 1:
			return "", usagef("give one subscription name")
		}
		return c.Args().First(), nil
	}
	return &cli.Command{
		Name:  "subscription",
		Usage: "list a tenant's subscriptions with their lag, rewind or delete them, show, retry or discard dead letters",
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "list subscriptions: checkpoint, lag behind the head, lease holder, dead letters",
				UsageText: "esadmin subscription list -t acme [--json]",
				Flags:     []cli.Flag{tenantFlag(), jsonFlag()},
				Action: func(c *cli.Context) error {
					return withTenant(c, func(ts *pges.TenantStore) error {
						list, err := ts.Subscriptions(c.Context)
						if err != nil {
							return err
						}
						if c.Bool("json") {
							return writeJSONLines(c, list)
						}
						w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						fmt.Fprintln(w, "NAME\tLAST POSITION\tHEAD\tLAG EVENTS\tLAG\tOWNER\tDEAD LETTERS\tFILTER\tHELD BACK BY")
						for _, s := range list {
							owner := s.Owner
							if owner == "" {
								owner = "-"
							}
							lag := strconv.FormatInt(s.LagEvents, 10)
							if s.LagCapped {
								lag += "+"
							}
							fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", s.Name, s.LastPosition, s.Head, lag,
								(time.Duration(s.LagSeconds * float64(time.Second))).Round(time.Millisecond), owner, s.DeadLetters, s.Filter, heldBy(s.HeldBy))
						}
						return w.Flush()
					})
				},
			},
			{
				Name:  "reset",
				Usage: "move a subscription's checkpoint so that events from a position or time are delivered again",
				UsageText: `esadmin subscription reset -t acme projector                 # from the beginning
   esadmin subscription reset -t acme --position 1200 projector
   esadmin subscription reset -t acme --time 2026-11-01T00:00:00Z projector`,
				Description: "The running consumer loses its lease at its next checkpoint and resumes from the new one " +
					"(a projection kept in its own tables should be cleared first when rebuilding from the beginning).",
				Flags: []cli.Flag{tenantFlag(),
					&cli.Int64Flag{Name: "position", Usage: "deliver events from this position on"},
					&cli.TimestampFlag{Name: "time", Layout: time.RFC3339, Usage: "deliver events recorded at or after this time (RFC 3339)"}},
				Action: func(c *cli.Context) error {
					name, err := nameArg(c)
					if err != nil {
						return err
					}
					return rewind(c, name, c.Int64("position"), c.Timestamp("time"))
				},
			},
			{
				Name:      "delete",
				Usage:     "delete a subscription with its checkpoint and dead letters",
				UsageText: "esadmin subscription delete -t acme [--yes] projector",
				Flags:     []cli.Flag{tenantFlag(), &cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation"}},
				Action: func(c *cli.Context) error {
					name, err := nameArg(c)
					if err != nil {
						return err
					}
					if !c.Bool("yes") {
						if err := confirm(c, fmt.Sprintf("This deletes subscription %q of tenant %q with its checkpoint.", name, c.String("tenant")), name); err != nil {
							return err
						}
					}
					return withTenant(c, func(ts *pges.TenantStore) error {
						if err := ts.DeleteSubscription(c.Context, name); err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "deleted subscription %s\n", name)
						return nil
					})
				},
			},
			{
				Name:      "retry",
				Usage:     "deliver a subscription's dead letters to its running consumer once more (all, or those at --position)",
				UsageText: "esadmin subscription retry -t acme [--position 42]... projector",
				Description: "Marks the dead letters and wakes the consumer: it hands each event to its handler again and drops " +
					"the dead letter when the handler succeeds; one that fails again stays parked with its new error.",
				Flags: []cli.Flag{tenantFlag(), &cli.Int64SliceFlag{Name: "position", Usage: "only the dead letter of this position (repeatable)"}},
				Action: func(c *cli.Context) error {
					name, err := nameArg(c)
					if err != nil {
						return err
					}
					return withTenant(c, func(ts *pges.TenantStore) error {
						n, err := ts.RetryDeadLetters(c.Context, name, c.Int64Slice("position")...)
						if err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "marked %d dead letters of %s for a retry\n", n, name)
						return nil
					})
				},
			},
			{
				Name:      "discard",
				Usage:     "delete a subscription's dead letters (all, or those at --position): their events are not delivered",
				UsageText: "esadmin subscription discard -t acme [--position 42]... [--yes] projector",
				Flags: []cli.Flag{tenantFlag(), &cli.Int64SliceFlag{Name: "position", Usage: "only the dead letter of this position (repeatable)"},
					&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation"}},
				Action: func(c *cli.Context) error {
					name, err := nameArg(c)
					if err != nil {
						return err
					}
					if !c.Bool("yes") {
						if err := confirm(c, fmt.Sprintf("This discards dead letters of subscription %q of tenant %q.", name, c.String("tenant")), name); err != nil {
							return err
						}
					}
					return withTenant(c, func(ts *pges.TenantStore) error {
						n, err := ts.DiscardDeadLetters(c.Context, name, c.Int64Slice("position")...)
						if err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "discarded %d dead letters of %s\n", n, name)
						return nil
					})
				},
			},
			{
				Name:      "dead-letters",
				Usage:     "list the events a subscription parked after its handler kept failing, as JSON Lines",
				UsageText: "esadmin subscription dead-letters -t acme projector",
				Flags:     []cli.Flag{tenantFlag()},
				Action: func(c *cli.Context) error {
					name, err := nameArg(c)
					if err != nil {
						return err
					}
					return withTenant(c, func(ts *pges.TenantStore) error {
						list, err := ts.DeadLetters(c.Context, name)
						if err != nil {
							return err
						}
						return writeJSONLines(c, list)
					})
				},
			},
		},
	}
}

// heldBy describes the transaction holding a subscription back, or "-".
func heldBy(h *pges.HoldingTransaction) string {
	if h == nil {
		return "-"
	}
	out := fmt.Sprintf("xid %d", h.Xid)
	if h.PID != 0 {
		out += fmt.Sprintf(", pid %d", h.PID)
	}
	if h.Database != "" {
		out += ", database " + h.Database
	}
	if h.AgeSeconds > 0 {
		out += ", open " + time.Duration(h.AgeSeconds*float64(time.Second)).Round(time.Millisecond).String()
	}
	if h.State != "" {
		out += ", " + h.State
	}
	return out
}

// rewind resets a subscription to position (if > 0), else to *at (if
// set), else to the beginning; shared by subscription reset and replay
// --rewind.
func rewind(c *cli.Context, name string, position int64, at *time.Time) error {
	if position < 0 {
		return usagef("a position must not be negative")
	}
	if position > 0 && at != nil {
		return usagef("give a position or a time, not both")
	}
	to := pges.ResetPoint{Position: position}
	if at != nil {
		to.Time = *at
	}
	return withTenant(c, func(ts *pges.TenantStore) error {
		if err := ts.ResetSubscription(c.Context, name, to); err != nil {
			return err
		}
		switch {
		case position > 0:
			fmt.Fprintf(c.App.Writer, "subscription %s rewound: events from position %d on are delivered again\n", name, position)
		case at != nil:
			fmt.Fprintf(c.App.Writer, "subscription %s rewound: events recorded from %s on are delivered again\n", name, at.Format(time.RFC3339))
		default:
			fmt.Fprintf(c.App.Writer, "subscription %s rewound to the beginning\n", name)
		}
		return nil
	})
}

func writeJSONLines[T any](c *cli.Context, list []T) error {
	enc := json.NewEncoder(c.App.Writer)
	for _, v := range list {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}
