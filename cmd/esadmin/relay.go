package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/relay"
	"github.com/urfave/cli/v2"
)

// relayCommand runs a relay in the foreground until Ctrl-C or SIGTERM.
func relayCommand() *cli.Command {
	return &cli.Command{
		Name:  "relay",
		Usage: "publish a tenant's events (or a filter's) to NATS JetStream (or RabbitMQ), exactly once after de-duplication, until stopped",
		UsageText: `esadmin relay -t acme --name orders
   esadmin relay -t acme --name orders --js-stream PGES --type OrderPlaced --type OrderShipped
   esadmin relay -t acme --name audit --subject 'audit.{tenant}.{stream}' --nats-url nats://broker:4222
   esadmin relay -t acme --name orders --amqp-url amqp://guest:guest@127.0.0.1:5672/ --exchange events`,
		Description: "Runs the durable subscription relay:NAME (one instance per tenant and name publishes, others " +
			"stand by and take over). Each message's id is the event id (Nats-Msg-Id); the checkpoint moves only " +
			"after JetStream acknowledged the batch. --js-stream creates that stream, capturing the subject template's " +
			"subjects, when it does not exist. Stops on Ctrl-C or SIGTERM with exit code 130.",
		Flags: append([]cli.Flag{tenantFlag(),
			&cli.StringFlag{Name: "name", Usage: "relay name (its subscription is relay:NAME)", Required: true},
			&cli.StringFlag{Name: "nats-url", Value: "nats://127.0.0.1:4222", EnvVars: []string{"NATS_URL"}, Usage: "NATS server(s), comma-separated"},
			&cli.StringFlag{Name: "subject", Value: relay.DefaultSubject, Usage: "subject template: literal tokens, {tenant}, {type}, {stream}"},
			&cli.StringFlag{Name: "js-stream", Usage: "JetStream stream to create if missing, capturing the template's subjects"},
			&cli.DurationFlag{Name: "duplicate-window", Value: 2 * time.Minute, Usage: "the created stream's de-duplication window"},
			&cli.BoolFlag{Name: "from-end", Usage: "a new relay starts at the end of the log instead of the beginning"},
			&cli.IntFlag{Name: "batch-size", Value: 1000, Usage: "events per acknowledged batch and checkpoint"},
			&cli.DurationFlag{Name: "lease-ttl", Value: 10 * time.Second, Usage: "a dead relay's standby takes over after this"},
			&cli.StringFlag{Name: "owner", Usage: "this instance's name in the lease (default host:pid:random)"},
			&cli.StringFlag{Name: "amqp-url", EnvVars: []string{"AMQP_URL"}, Usage: "publish to RabbitMQ at this URL instead of NATS (with --exchange)"},
			&cli.StringFlag{Name: "exchange", Usage: "the RabbitMQ exchange (it must exist; a topic exchange routes by the subject)"},
		}, filterFlags()...),
		Action: func(c *cli.Context) error {
			filter, err := filterFromFlags(c)
			if err != nil {
				return err
			}
			if c.Int("batch-size") < 1 || c.Duration("lease-ttl") <= 0 || c.Duration("duplicate-window") < 0 {
				return usagef("--batch-size and --lease-ttl must be positive")
			}
			wildcard, err := relay.Wildcard(c.String("subject"))
			if err != nil {
				return usagef("%v", err)
			}
			cfg := relay.Config{Name: c.String("name"), Filter: filter, Subject: c.String("subject"), BatchSize: c.Int("batch-size"),
				LeaseTTL: c.Duration("lease-ttl"), Owner: c.String("owner"),
				Logger: slog.New(slog.NewTextHandler(c.App.ErrWriter, nil))}
			if c.Bool("from-end") {
				cfg.Start = pges.StartAtEnd()
			}
			if u := c.String("amqp-url"); u != "" {
				if c.String("js-stream") != "" {
					return usagef("--js-stream is for NATS, not with --amqp-url")
				}
				b, err := relay.NewRabbitMQ(u, c.String("exchange"))
				if err != nil {
					return fmt.Errorf("cannot reach RabbitMQ (set --amqp-url or AMQP_URL): %w", err)
				}
				defer b.Close()
				return runRelay(c, b, cfg, "rabbitmq exchange "+c.String("exchange"))
			}
			nc, err := relay.ConnectNATS(c.String("nats-url"))
			if err != nil {
				return fmt.Errorf("cannot reach NATS at %s (set --nats-url or NATS_URL): %w", c.String("nats-url"), err)
			}
			defer nc.Close()
			b, err := relay.NewJetStream(nc, relay.JetStreamOptions{MaxPending: 2 * cfg.BatchSize, AckTimeout: cfg.LeaseTTL / 2})
			if err != nil {
				return err
			}
			if name := c.String("js-stream"); name != "" {
				ctx, cancel := context.WithTimeout(c.Context, c.Duration("connect-timeout"))
				_, err := relay.EnsureStream(ctx, b.JS(), name, []string{wildcard}, c.Duration("duplicate-window"))
				cancel()
				if err != nil {
					return fmt.Errorf("JetStream stream %s: %w", name, err)
				}
			}
			return runRelay(c, b, cfg, "nats "+nc.ConnectedUrlRedacted())
		},
	}
}

func runRelay(c *cli.Context, b relay.Broker, cfg relay.Config, to string) error {
	return withTenant(c, func(ts *pges.TenantStore) error {
		r, err := relay.New(ts, b, cfg)
		if err != nil {
			return usagef("%v", err)
		}
		cfg.Logger.Info("relay running", "tenant", ts.TenantID(), "subscription", relay.SubscriptionName(cfg.Name),
			"subject", cfg.Subject, "to", to)
		if err := r.Run(c.Context); err != nil {
			return err
		}
		st := r.Stats()
		return fmt.Errorf("%w: relay %s stopped after %d acknowledged messages (%d duplicates dropped by the broker)",
			errInterrupted, cfg.Name, st.Acked, st.Duplicates)
	})
}
