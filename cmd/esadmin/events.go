package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"

	"github.com/eventstore-go/pges"
	"github.com/google/uuid"
	"github.com/urfave/cli/v2"
)

// inputEvent is one JSON Lines record of `events append`.
type inputEvent struct {
	ID       uuid.UUID       `json:"id"`
	Type     string          `json:"type"`
	Payload  json.RawMessage `json:"payload"`
	Metadata pges.Metadata   `json:"metadata"`
	Tags     []string        `json:"tags"`
	// SchemaVersion, as `events read` and `replay` print it, so that their
	// output appends back unchanged.
	SchemaVersion int `json:"schema_version"`
}

func parseExpected(s string) (pges.ExpectedVersion, error) {
	switch s {
	case "any":
		return pges.Any, nil
	case "no-stream":
		return pges.NoStream, nil
	case "exists":
		return pges.StreamExists, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, usagef("--expected-version %q: use any, no-stream, exists or a version number", s)
	}
	return pges.Exactly(n), nil
}

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "append and read events",
		Subcommands: []*cli.Command{
			{
				Name:  "append",
				Usage: "append JSON Lines events from a file or stdin, atomically: to a stream with an expected version, or (DCB) with a condition",
				UsageText: `esadmin events append -t acme --stream order-1 --expected-version no-stream --file events.jsonl
   echo '{"type":"OrderPlaced","payload":{"total":42},"tags":["customer:7"]}' | esadmin events append -t acme --stream order-1
   echo '{"type":"Registered","payload":{},"tags":["username:alice"]}' | esadmin events append -t acme --fail-if-tag username:alice`,
				Flags: []cli.Flag{
					tenantFlag(),
					&cli.StringFlag{Name: "stream", Usage: "stream id; without it the events belong to no stream (DCB)"},
					&cli.StringFlag{Name: "expected-version", Value: "any", Usage: "with --stream: any, no-stream, exists or a version number"},
					&cli.StringSliceFlag{Name: "fail-if-type", Usage: "without --stream: fail if an event of one of these types..."},
					&cli.StringSliceFlag{Name: "fail-if-tag", Usage: "...carrying all these tags was appended after --after (exit code 3)"},
					&cli.Int64Flag{Name: "after", Usage: "the condition's position (usually a read's head; 0: any matching event)"},
					&cli.StringFlag{Name: "file", Usage: "JSON Lines file, - for stdin", Value: "-"},
				},
				Action: func(c *cli.Context) error {
					stream := c.String("stream")
					failIf := pges.Query{{Types: c.StringSlice("fail-if-type"), Tags: c.StringSlice("fail-if-tag")}}
					conditional := len(failIf[0].Types) > 0 || len(failIf[0].Tags) > 0
					switch {
					case stream != "" && (conditional || c.IsSet("after")):
						return usagef("a stream append takes --expected-version; --fail-if-* and --after are for appends without --stream")
					case stream == "" && c.IsSet("expected-version"):
						return usagef("--expected-version needs --stream")
					case c.Int64("after") < 0:
						return usagef("--after must not be negative")
					case c.IsSet("after") && !conditional:
						return usagef("--after needs --fail-if-type or --fail-if-tag")
					}
					expected, err := parseExpected(c.String("expected-version"))
					if err != nil {
						return err
					}
					in, err := stdinOrFile(c, c.String("file"))
					if err != nil {
						return err
					}
					defer in.Close()
					// Parse everything first: a bad line appends nothing.
					var events []pges.EventData
					sc := bufio.NewScanner(in)
					sc.Buffer(make([]byte, 64*1024), 8<<20)
					for line := 1; sc.Scan(); line++ {
						if len(sc.Bytes()) == 0 {
							continue
						}
						var e inputEvent
						if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
							return usagef("line %d: not a JSON event: %v (nothing was appended)", line, err)
						}
						if len(e.Payload) == 0 {
							e.Payload = json.RawMessage(`{}`)
						}
						events = append(events, pges.EventData{ID: e.ID, Type: e.Type, Payload: e.Payload, Metadata: e.Metadata, Tags: e.Tags, SchemaVersion: e.SchemaVersion})
					}
					if err := sc.Err(); err != nil {
						return fmt.Errorf("read events: %w", err)
					}
					return withTenant(c, func(ts *pges.TenantStore) error {
						if stream == "" {
							var cond *pges.AppendCondition
							if conditional {
								cond = &pges.AppendCondition{FailIfEventsMatch: failIf, After: c.Int64("after")}
							}
							res, err := ts.Append(c.Context, events, cond)
							if err != nil {
								return err
							}
							return json.NewEncoder(c.App.Writer).Encode(map[string]any{"positions": res.Positions})
						}
						res, err := ts.AppendToStream(c.Context, stream, expected, events...)
						if err != nil {
							return err
						}
						return json.NewEncoder(c.App.Writer).Encode(map[string]any{
							"stream_version": res.StreamVersion, "positions": res.Positions})
					})
				},
			},
			{
				Name:  "read",
				Usage: "read a stream's events, or a DCB query's (--type, --tag), as JSON Lines",
				UsageText: `esadmin events read -t acme --stream order-1 [--from 1] [--limit 10] [--backwards]
   esadmin events read -t acme --tag course:c1 --tag student:s7 [--type Subscribed] [--after 120]`,
				Flags: []cli.Flag{
					tenantFlag(),
					&cli.StringFlag{Name: "stream", Usage: "stream id"},
					&cli.Int64Flag{Name: "from", Usage: "stream: first version (0: start, or end with --backwards)"},
					typeFlag(), tagFlag(),
					&cli.Int64Flag{Name: "after", Usage: "query: only events after this position"},
					&cli.IntFlag{Name: "limit", Usage: "at most this many events (0: all)"},
					&cli.BoolFlag{Name: "backwards", Usage: "newest first"},
				},
				Action: func(c *cli.Context) error {
					stream, query, err := streamOrQuery(c)
					switch {
					case err != nil:
						return err
					case stream == "" && len(query[0].Types) == 0 && len(query[0].Tags) == 0:
						return usagef("give --stream, or a query with --type and/or --tag")
					case c.Int64("from") < 0 || c.Int("limit") < 0 || c.Int64("after") < 0:
						return usagef("--from, --after and --limit must not be negative")
					}
					return withTenant(c, func(ts *pges.TenantStore) error {
						enc := json.NewEncoder(c.App.Writer)
						var events iter.Seq2[pges.RecordedEvent, error]
						switch {
						case stream == "":
							res, err := ts.Read(c.Context, query,
								pges.QueryOptions{After: c.Int64("after"), Limit: c.Int("limit"), Backwards: c.Bool("backwards")})
							if err != nil {
								return err
							}
							events = res.Events
						case !c.Bool("backwards") && c.Int("limit") == 0:
							events = ts.IterateStream(c.Context, stream, c.Int64("from"))
						default:
							page, err := ts.ReadStream(c.Context, stream, pges.ReadOptions{From: c.Int64("from"), Limit: c.Int("limit"), Backwards: c.Bool("backwards")})
							if err != nil {
								return err
							}
							events = func(yield func(pges.RecordedEvent, error) bool) {
								for _, e := range page {
									if !yield(e, nil) {
										return
									}
								}
							}
						}
						for e, err := range events {
							if err != nil {
								return err
							}
							if err := enc.Encode(e); err != nil {
								return err
							}
						}
						return nil
					})
				},
			},
			tailCommand(),
		},
	}
}

// typeFlag and tagFlag give a command a one-item DCB query (new flags per
// command: urfave/cli's slice flags keep their values).
func typeFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "type", Usage: "query: event types (any of them)"}
}

func tagFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "tag", Usage: "query: tags (all of them)"}
}

// streamOrQuery reads --stream or the query flags, which exclude each other.
func streamOrQuery(c *cli.Context) (string, pges.Query, error) {
	stream := c.String("stream")
	q := pges.Query{{Types: c.StringSlice("type"), Tags: c.StringSlice("tag")}}
	if stream != "" && (len(q[0].Types) > 0 || len(q[0].Tags) > 0) {
		return "", nil, usagef("--stream and a query (--type, --tag) exclude each other")
	}
	return stream, q, nil
}
