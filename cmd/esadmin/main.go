// Command esadmin administers the event store: migrations, tenants, reading,
// appending and replaying events, snapshots, benchmarks. Exit codes: 0
// success, 1 failure, 2 usage error or invalid input (nothing written), 3
// conflict (wrong expected version or violated condition: reload and retry),
// 130 interrupted (Ctrl-C, a clean stop).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
