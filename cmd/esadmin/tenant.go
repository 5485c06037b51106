package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/eventstore-go/pges/tenant"
	"github.com/urfave/cli/v2"
)

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON for programs"}

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
				Usage:     "register a tenant and create its partitions (idempotent)",
				UsageText: "esadmin tenant create --name 'Acme Corp' acme   (flags go before the id)",
				ArgsUsage: "TENANT_ID",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "name", Usage: "display name"}, jsonFlag},
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
						return print(c, t)
					})
				},
			},
			{
				Name:      "list",
				Usage:     "list tenants",
				UsageText: "esadmin tenant list [--json]",
				Flags:     []cli.Flag{jsonFlag},
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
				Usage:     "show one tenant",
				UsageText: "esadmin tenant show acme [--json]",
				ArgsUsage: "TENANT_ID",
				Flags:     []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("tenant show takes one tenant id")
					}
					return withManager(c, func(m *tenant.Manager) error {
						t, err := m.Get(c.Context, c.Args().First())
						if err != nil {
							return err
						}
						return print(c, t)
					})
				},
			},
		},
	}
}
