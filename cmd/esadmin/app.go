package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"
)

// Exit codes, documented in the README.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitConflict = 3
	// exitInterrupted: stopped by Ctrl-C (SIGINT), cleanly.
	exitInterrupted = 130
)

const defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// usageError marks bad command-line input (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// run executes esadmin with args, writing output to stdout and one-line
// errors to stderr, and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "esadmin:", oneLine(err))
	var ue usageError
	switch {
	case errors.As(err, &ue), errors.Is(err, pges.ErrInvalidEvent), isCLIUsage(err):
		return exitUsage
	case errors.Is(err, pges.ErrWrongExpectedVersion), errors.Is(err, pges.ErrAppendConditionViolated):
		return exitConflict
	case errors.Is(err, errInterrupted), ctx.Err() != nil:
		return exitInterrupted
	}
	return exitFailure
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

// isCLIUsage recognizes the usage errors urfave/cli reports as plain errors.
func isCLIUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "Required flag") || strings.HasPrefix(msg, "No help topic for") ||
		strings.HasPrefix(msg, "flag provided but not defined")
}

// onUsageError turns flag errors of any command into usage errors (exit 2)
// without printing the help text: the error line says what is wrong.
func onUsageError(_ *cli.Context, err error, _ bool) error { return usageError{err.Error()} }

// setUsageHandlers gives every command the app's usage error handler;
// urfave/cli applies the app's own only to global flags.
func setUsageHandlers(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		setUsageHandlers(c.Subcommands)
	}
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "esadmin",
		Usage:                "administer the pges event store",
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		ExitErrHandler:       func(*cli.Context, error) {}, // run() prints errors and picks the exit code
		OnUsageError:         onUsageError,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "database-url",
				Usage:   "PostgreSQL URL (default: the local server the README sets up)",
				EnvVars: []string{"DATABASE_URL"},
				Value:   defaultURL,
			},
			&cli.DurationFlag{Name: "connect-timeout", Value: 5 * time.Second, Usage: "give up connecting after this long"},
		},
		Commands: []*cli.Command{migrateCommand(), tenantCommand(), eventsCommand(), replayCommand(), snapshotCommand(),
			subscriptionCommand(), relayCommand(), benchCommand(), doctorCommand(), completionCommand()},
	}
	setUsageHandlers(app.Commands)
	return app
}

// connect opens a pool and checks the server answers within the timeout,
// so an unreachable server is a clear error, not a hang.
func connect(c *cli.Context) (*pgxpool.Pool, error) {
	url := c.String("database-url")
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, usagef("bad --database-url: %v", err)
	}
	timeout := c.Duration("connect-timeout")
	cfg.ConnConfig.ConnectTimeout = timeout
	cfg.MaxConns = max(cfg.MaxConns, 20)
	pool, err := pgxpool.NewWithConfig(c.Context, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach PostgreSQL at %s (is it running? set --database-url or DATABASE_URL): %w", redact(cfg), err)
	}
	return pool, nil
}

func redact(cfg *pgxpool.Config) string {
	return fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
}

// withStore connects and runs fn with a store scoped to --tenant.
func withTenant(c *cli.Context, fn func(ts *pges.TenantStore) error) error {
	id := c.String("tenant")
	if id == "" {
		return usagef("--tenant is required")
	}
	pool, err := connect(c)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := pges.New(pool, nil)
	if err != nil {
		return err
	}
	return fn(store.Tenant(id))
}

// confirm asks on stderr for answer to be typed and fails with a usage
// error, changing nothing, when it is not.
func confirm(c *cli.Context, prompt, answer string) error {
	fmt.Fprintf(c.App.ErrWriter, "%s Type %s to confirm: ", prompt, answer)
	line, _ := bufio.NewReader(c.App.Reader).ReadString('\n')
	if strings.TrimSpace(line) != answer {
		return usagef("not confirmed: nothing was changed (use --yes in scripts)")
	}
	return nil
}

// tenantFlag, jsonFlag and dryRun are made anew for every app: urfave/cli writes
// into a flag while it parses, and apps run concurrently in tests.
func tenantFlag() cli.Flag {
	return &cli.StringFlag{Name: "tenant", Aliases: []string{"t"}, Usage: "tenant id", EnvVars: []string{"ESADMIN_TENANT"}}
}

func stdinOrFile(c *cli.Context, path string) (io.ReadCloser, error) {
	if path == "" || path == "-" {
		return io.NopCloser(c.App.Reader), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("open %s: %v", path, err)
	}
	return f, nil
}
