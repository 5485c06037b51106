package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/eventstore-go/pges/tenant"
	"github.com/urfave/cli/v2"
)

func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print JSON for programs"} }

func tenantCommand() *cli.Command {
	withManager := func(c *cli.Context, fn func(m *tenant.Manager) error) error {
		pool, err := connect(c)
		if err != nil {
			return err
		}
		defer pool.Close()
		return fn(tenant.NewManager(pool))
	}
	print := func(c *cli.Context, ts ...tenant.Tenant) error {
		if c.Bool("json") {
			enc := json.NewEncoder(c.App.Writer)
			for _, t := range ts {
				if err := enc.Encode(t); err != nil {
					return err
				}
			}
			return nil
		}
		w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "TENANT\tSTATUS\tCREATED\tNAME")
		for _, t := range ts {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.ID, t.Status, t.CreatedAt.Format("2006-01-02 15:04:05"), t.Name)
		}
		return w.Flush()
	}
	return &cli.Command{
		Name:  "tenant",
		Usage: "create and inspect tenants (run as the schema owner)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "register a tenant (idempotent); it shares the hash partitions unless --dedicated",
				UsageText: "esadmin tenant create [--dedicated] --name 'Acme Corp' acme   (flags go before the id)",
				ArgsUsage: "TENANT_ID",
				Flags: []cli.Flag{&cli.StringFlag{Name: "name", Usage: "display name"},
					&cli.BoolFlag{Name: "dedicated", Usage: "give the tenant partitions of its own (for a tenant that will be large; see tenant dedicate)"},
					jsonFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("tenant create takes one tenant id")
					}
					if err := tenant.ValidateID(c.Args().First()); err != nil {
						return usageError{err.Error()}
					}
					return withManager(c, func(m *tenant.Manager) error {
						t, err := m.Create(c.Context, c.Args().First(), c.String("name"))
						if err != nil {
							return err
						}
						if c.Bool("dedicated") {
							if _, err := m.Dedicate(c.Context, t.ID); err != nil {
								return err
							}
						}
						return print(c, t)
					})
				},
			},
			{
				Name: "dedicate",
				Usage: "give a shared tenant partitions of its own, moving its data (for a tenant with data every shared " +
					"tenant waits while PostgreSQL scans the shared partitions: do it at creation, or at a quiet time)",
				UsageText: "esadmin tenant dedicate acme",
				ArgsUsage: "TENANT_ID",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("tenant dedicate takes one tenant id")
					}
					id := c.Args().First()
					if err := tenant.ValidateID(id); err != nil {
						return usageError{err.Error()}
					}
					return withManager(c, func(m *tenant.Manager) error {
						moved, err := m.Dedicate(c.Context, id)
						if err != nil {
							return err
						}
						if moved {
							fmt.Fprintf(c.App.Writer, "tenant %s now has partitions of its own\n", id)
						} else {
							fmt.Fprintf(c.App.Writer, "tenant %s had partitions of its own already\n", id)
						}
						return nil
					})
				},
			},
			{
				Name:      "list",
				Usage:     "list tenants",
				UsageText: "esadmin tenant list [--json]",
				Flags:     []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					return withManager(c, func(m *tenant.Manager) error {
						ts, err := m.List(c.Context)
						if err != nil {
							return err
						}
						return print(c, ts...)
					})
				},
			},
			{
				Name:      "show",
				Usage:     "show one tenant with what it holds (events, streams, snapshots, bytes, last event)",
				UsageText: "esadmin tenant show [--json] acme",
				ArgsUsage: "TENANT_ID",
				Flags:     []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("tenant show takes one tenant id")
					}
					return withManager(c, func(m *tenant.Manager) error {
						t, err := m.Get(c.Context, c.Args().First())
						if err != nil {
							return err
						}
						st, err := m.Stats(c.Context, t.ID)
						if err != nil {
							return err
						}
						if c.Bool("json") {
							return json.NewEncoder(c.App.Writer).Encode(struct {
								tenant.Tenant
								Stats tenant.Stats
							}{t, st})
						}
						last := "-"
						if !st.LastEventAt.IsZero() {
							last = st.LastEventAt.Format("2006-01-02 15:04:05")
						}
						w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						partitions := "shared"
						if st.Dedicated {
							partitions = "dedicated"
						}
						fmt.Fprintf(w, "tenant\t%s\nname\t%s\nstatus\t%s\ncreated\t%s\npartitions\t%s\nevents\t%d\nstreams\t%d\nsnapshots\t%d\nbytes\t%d\nlast event\t%s\n",
							t.ID, t.Name, t.Status, t.CreatedAt.Format("2006-01-02 15:04:05"), partitions, st.Events, st.Streams, st.Snapshots, st.Bytes, last)
						return w.Flush()
					})
				},
			},
			{
				Name:      "export",
				Usage:     "write a tenant's events and snapshots as JSON Lines (to back it up or move it)",
				UsageText: "esadmin tenant export [--file acme.jsonl] acme",
				ArgsUsage: "TENANT_ID",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "file", Usage: "write here instead of stdout"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("tenant export takes one tenant id")
					}
					return withManager(c, func(m *tenant.Manager) error {
						w := c.App.Writer
						if path := c.String("file"); path != "" && path != "-" {
							f, err := os.Create(path)
							if err != nil {
								return usagef("create %s: %v", path, err)
							}
							defer f.Close()
							w = f
						}
						res, err := m.Export(c.Context, c.Args().First(), w)
						if err != nil {
							return err
						}
						fmt.Fprintf(c.App.ErrWriter, "exported %d events and %d snapshots\n", res.Events, res.Snapshots)
						return nil
					})
				},
			},
			{
				Name:  "import",
				Usage: "import an export in one transaction; counts are verified, a non-empty tenant is refused without --merge",
				UsageText: `esadmin tenant import --file acme.jsonl
   esadmin tenant import --tenant acme_copy --file acme.jsonl`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "file", Usage: "read this export instead of stdin"},
					&cli.StringFlag{Name: "tenant", Usage: "import into this tenant instead of the export's"},
					&cli.BoolFlag{Name: "merge", Usage: "import into a tenant that has data (events get new positions)"},
				},
				Action: func(c *cli.Context) error {
					in, err := stdinOrFile(c, c.String("file"))
					if err != nil {
						return err
					}
					defer in.Close()
					return withManager(c, func(m *tenant.Manager) error {
						res, err := m.Import(c.Context, in, tenant.ImportOptions{Tenant: c.String("tenant"), Merge: c.Bool("merge")})
						if err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "imported %d events and %d snapshots into tenant %s", res.Events, res.Snapshots, res.Tenant)
						if res.Skipped > 0 {
							fmt.Fprintf(c.App.Writer, " (skipped %d events it already had)", res.Skipped)
						}
						fmt.Fprintln(c.App.Writer)
						return nil
					})
				},
			},
			statusCommand("suspend", "make a tenant's appends fail (reads still work)", (*tenant.Manager).Suspend, print),
			statusCommand("resume", "make a suspended tenant writable again", (*tenant.Manager).Resume, print),
			{
				Name:      "drop",
				Usage:     "delete a tenant and all its data (drops a dedicated tenant's partitions, deletes a shared tenant's rows); asks to confirm unless --yes",
				UsageText: "esadmin tenant drop [--yes] acme",
				ArgsUsage: "TENANT_ID",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("tenant drop takes one tenant id")
					}
					id := c.Args().First()
					if err := tenant.ValidateID(id); err != nil {
						return usageError{err.Error()}
					}
					if !c.Bool("yes") {
						if err := confirm(c, fmt.Sprintf("This deletes tenant %q and all its events.", id), id); err != nil {
							return err
						}
					}
					return withManager(c, func(m *tenant.Manager) error {
						dropped, err := m.Drop(c.Context, id)
						if err != nil {
							return err
						}
						if !dropped {
							fmt.Fprintf(c.App.Writer, "tenant %s did not exist\n", id)
							return nil
						}
						fmt.Fprintf(c.App.Writer, "dropped tenant %s\n", id)
						return nil
					})
				},
			},
		},
	}
}

// statusCommand builds tenant suspend and resume.
func statusCommand(name, usage string, set func(*tenant.Manager, context.Context, string) (tenant.Tenant, error),
	print func(*cli.Context, ...tenant.Tenant) error) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: "esadmin tenant " + name + " [--json] acme",
		ArgsUsage: "TENANT_ID",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("tenant %s takes one tenant id", name)
			}
			pool, err := connect(c)
			if err != nil {
				return err
			}
			defer pool.Close()
			t, err := set(tenant.NewManager(pool), c.Context, c.Args().First())
			if err != nil {
				return err
			}
			return print(c, t)
		},
	}
}
