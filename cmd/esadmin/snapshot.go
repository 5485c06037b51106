package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/eventstore-go/pges"
	"github.com/urfave/cli/v2"
)

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "list, delete and prune a tenant's snapshots",
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "list snapshots (without their state)",
				UsageText: "esadmin snapshot list -t acme [--stream order-1] [--json]",
				Flags:     []cli.Flag{tenantFlag(), &cli.StringFlag{Name: "stream", Usage: "only this stream"}, jsonFlag()},
				Action: func(c *cli.Context) error {
					return withTenant(c, func(ts *pges.TenantStore) error {
						list, err := ts.ListSnapshots(c.Context, c.String("stream"))
						if err != nil {
							return err
						}
						if c.Bool("json") {
							enc := json.NewEncoder(c.App.Writer)
							for _, s := range list {
								if err := enc.Encode(s); err != nil {
									return err
								}
							}
							return nil
						}
						w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						fmt.Fprintln(w, "STREAM\tVERSION\tSCHEMA\tBYTES\tCREATED")
						for _, s := range list {
							fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\n", s.StreamID, s.StreamVersion, s.SchemaVersion, s.Bytes, s.CreatedAt.Format("2006-01-02 15:04:05"))
						}
						return w.Flush()
					})
				},
			},
			{
				Name:      "delete",
				Usage:     "delete a stream's snapshot at a version, or all of them without --version",
				UsageText: "esadmin snapshot delete -t acme --stream order-1 [--version 40]",
				Flags:     []cli.Flag{tenantFlag(), &cli.StringFlag{Name: "stream", Usage: "stream id (required)"}, &cli.Int64Flag{Name: "version", Usage: "only this version"}},
				Action: func(c *cli.Context) error {
					if c.String("stream") == "" {
						return usagef("--stream is required")
					}
					if c.Int64("version") < 0 {
						return usagef("--version must not be negative")
					}
					return withTenant(c, func(ts *pges.TenantStore) error {
						n, err := ts.DeleteSnapshots(c.Context, c.String("stream"), c.Int64("version"))
						if err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "deleted %d snapshots\n", n)
						return nil
					})
				},
			},
			{
				Name:      "prune",
				Usage:     "keep the latest --keep snapshots of every stream of the tenant, delete the rest",
				UsageText: "esadmin snapshot prune -t acme [--keep 1]",
				Flags:     []cli.Flag{tenantFlag(), &cli.IntFlag{Name: "keep", Value: 1, Usage: "snapshots to keep per stream"}},
				Action: func(c *cli.Context) error {
					if c.Int("keep") < 1 {
						return usagef("--keep must be at least 1")
					}
					return withTenant(c, func(ts *pges.TenantStore) error {
						n, err := ts.PruneSnapshots(c.Context, c.Int("keep"))
						if err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "deleted %d snapshots\n", n)
						return nil
					})
				},
			},
		},
	}
}
