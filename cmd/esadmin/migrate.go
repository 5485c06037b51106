package main

import (
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"text/tabwriter"

	"github.com/eventstore-go/pges"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/urfave/cli/v2"
)

// freshDatabase reports whether goose has never run here: its Status and
// GetDBVersion would create the version table, and a dry run changes nothing.
func freshDatabase(c *cli.Context, db *sql.DB) (bool, error) {
	var exists bool
	err := db.QueryRowContext(c.Context, "SELECT to_regclass('goose_db_version') IS NOT NULL").Scan(&exists)
	return !exists, err
}

func dryRun() cli.Flag {
	return &cli.BoolFlag{Name: "dry-run", Usage: "print the SQL that would run, change nothing"}
}

// printSQL prints the Up or Down section of a migration, as goose would run
// it, without its annotations.
func printSQL(c *cli.Context, src *goose.Source, section string) error {
	body, err := fs.ReadFile(pges.Migrations(), path.Base(src.Path))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "-- %s %d %s\n", strings.ToLower(section), src.Version, path.Base(src.Path))
	in := false
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "-- +goose ") {
			switch strings.TrimPrefix(line, "-- +goose ") {
			case "Up", "Down":
				in = strings.TrimPrefix(line, "-- +goose ") == section
			}
			continue
		}
		if in {
			fmt.Fprintln(c.App.Writer, line)
		}
	}
	return nil
}

func migrateCommand() *cli.Command {
	withProvider := func(c *cli.Context, fn func(p *goose.Provider, db *sql.DB) error) error {
		pool, err := connect(c)
		if err != nil {
			return err
		}
		defer pool.Close()
		sqlDB := stdlib.OpenDBFromPool(pool)
		defer sqlDB.Close()
		p, err := pges.NewMigrationProvider(sqlDB)
		if err != nil {
			return err
		}
		return fn(p, sqlDB)
	}
	printResults := func(c *cli.Context, results []*goose.MigrationResult) {
		if len(results) == 0 {
			fmt.Fprintln(c.App.Writer, "nothing to do: the schema is current")
		}
		for _, r := range results {
			fmt.Fprintf(c.App.Writer, "%s %d %s (%s)\n", r.Direction, r.Source.Version, r.Source.Path, r.Duration.Round(1e5))
		}
	}
	return &cli.Command{
		Name:  "migrate",
		Usage: "apply or inspect the store's schema migrations (run as the schema owner)",
		Subcommands: []*cli.Command{
			{
				Name:      "up",
				Usage:     "apply all pending migrations",
				UsageText: "esadmin migrate up [--dry-run]",
				Flags:     []cli.Flag{dryRun()},
				Action: func(c *cli.Context) error {
					return withProvider(c, func(p *goose.Provider, db *sql.DB) error {
						if c.Bool("dry-run") {
							fresh, err := freshDatabase(c, db)
							if err != nil {
								return err
							}
							var st []*goose.MigrationStatus
							if fresh { // everything is pending; goose's Status would create its table
								for _, src := range p.ListSources() {
									st = append(st, &goose.MigrationStatus{Source: src, State: goose.StatePending})
								}
							} else if st, err = p.Status(c.Context); err != nil {
								return err
							}
							n := 0
							for _, s := range st {
								if s.State == goose.StatePending {
									n++
									if err := printSQL(c, s.Source, "Up"); err != nil {
										return err
									}
								}
							}
							if n == 0 {
								fmt.Fprintln(c.App.Writer, "-- nothing to do: the schema is current")
							}
							return nil
						}
						res, err := p.Up(c.Context)
						printResults(c, res)
						return err
					})
				},
			},
			{
				Name:      "down",
				Usage:     "roll back the latest migration (destroys what it created)",
				UsageText: "esadmin migrate down [--dry-run]",
				Flags:     []cli.Flag{dryRun()},
				Action: func(c *cli.Context) error {
					return withProvider(c, func(p *goose.Provider, db *sql.DB) error {
						if c.Bool("dry-run") {
							fresh, err := freshDatabase(c, db)
							if err != nil || fresh {
								if err == nil {
									fmt.Fprintln(c.App.Writer, "-- nothing to roll back")
								}
								return err
							}
							v, err := p.GetDBVersion(c.Context)
							if err != nil {
								return err
							}
							for _, s := range p.ListSources() {
								if s.Version == v {
									return printSQL(c, s, "Down")
								}
							}
							fmt.Fprintln(c.App.Writer, "-- nothing to roll back")
							return nil
						}
						res, err := p.Down(c.Context)
						if res != nil {
							printResults(c, []*goose.MigrationResult{res})
						}
						return err
					})
				},
			},
			{
				Name:      "status",
				Usage:     "list migrations and whether each is applied",
				UsageText: "esadmin migrate status",
				Action: func(c *cli.Context) error {
					return withProvider(c, func(p *goose.Provider, db *sql.DB) error {
						st, err := p.Status(c.Context)
						if err != nil {
							return err
						}
						w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
						fmt.Fprintln(w, "VERSION\tSTATE\tAPPLIED AT\tFILE")
						for _, s := range st {
							at := "-"
							if !s.AppliedAt.IsZero() {
								at = s.AppliedAt.Format("2006-01-02 15:04:05")
							}
							fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", s.Source.Version, s.State, at, s.Source.Path)
						}
						return w.Flush()
					})
				},
			},
			{
				Name:      "version",
				Usage:     "print the applied schema version",
				UsageText: "esadmin migrate version",
				Action: func(c *cli.Context) error {
					return withProvider(c, func(p *goose.Provider, db *sql.DB) error {
						v, err := p.GetDBVersion(c.Context)
						if err != nil {
							return err
						}
						fmt.Fprintln(c.App.Writer, v)
						return nil
					})
				},
			},
		},
	}
}
