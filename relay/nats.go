package relay

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConnectNATS connects to NATS with the options a relay needs: reconnect
// forever, and never buffer a publish while reconnecting (see JetStream).
func ConnectNATS(url string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name("pges-relay"), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1)}, opts...)
	return nats.Connect(url, opts...)
}

// JetStream publishes a relay's messages to NATS JetStream, the event id as
// the message id (Nats-Msg-Id): a stream whose duplicate window covers the
// time a relay needs to come back drops its re-sends.
//
// Per-stream order: messages of a batch are pipelined on one connection, in
// order. A batch stops sending at the first sign of failure (a publish that
// fails, an error acknowledgement, a reconnect since the batch began), and
// the publish is never retried by the client, so what the broker stored of
// a failed batch is, per connection, what was sent before the failure; the
// retry re-sends the batch from its start and de-duplication drops what was
// stored. Before the first message on a subject it checks that a stream
// captures the subject: otherwise that message would fail while later ones
// on other subjects were stored. Failures that hit one message and not the
// next (stream limits, a cluster's leader change) can still reorder; the
// relay counts them (Stats.Reordered) and logs them. The connection must not buffer publishes while reconnecting
// (ConnectNATS sets nats.ReconnectBufSize(-1)): such a buffer would deliver
// later messages after lost earlier ones.
type JetStream struct {
	nc *nats.Conn
	js jetstream.JetStream

	futures []jetstream.PubAckFuture
	streams []string      // the event stream of each future, for the order check
	failed  atomic.Bool   // an acknowledgement of this batch failed
	epoch   atomic.Uint64 // nc's reconnects when the batch began
	begun   bool
	// captured holds the subjects a JetStream stream was found to capture.
	captured map[string]bool
}

// JetStreamOptions tune NewJetStream.
type JetStreamOptions struct {
	// MaxPending bounds the unacknowledged publishes; at least the relay's
	// batch size. Default 4096.
	MaxPending int
	// AckTimeout fails a publish not acknowledged within it. Default 5s.
	AckTimeout time.Duration
}

// NewJetStream returns a Broker publishing through nc.
func NewJetStream(nc *nats.Conn, o JetStreamOptions) (*JetStream, error) {
	if nc == nil {
		return nil, invalid("a NATS connection is required")
	}
	if nc.Opts.ReconnectBufSize >= 0 && nc.Opts.AllowReconnect {
		return nil, invalid("the NATS connection buffers publishes while reconnecting: set nats.ReconnectBufSize(-1) (or use ConnectNATS), " +
			"or a message sent after a lost one would break per-stream order")
	}
	if o.MaxPending < 0 || o.AckTimeout < 0 {
		return nil, invalid("JetStream options must not be negative")
	}
	setDefault(&o.MaxPending, 4096)
	setDefault(&o.AckTimeout, 5*time.Second)
	b := &JetStream{nc: nc, captured: map[string]bool{}}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(o.MaxPending), jetstream.WithPublishAsyncTimeout(o.AckTimeout),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { b.failed.Store(true) }))
	if err != nil {
		return nil, err
	}
	b.js = js
	return b, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// JS returns the JetStream context, to manage streams.
func (b *JetStream) JS() jetstream.JetStream { return b.js }

var errBatchStopped = errors.New("the batch stopped sending after a failure or a reconnect")

// Publish implements Broker.
func (b *JetStream) Publish(m *Message) error {
	reconnects := b.nc.Stats().Reconnects
	if !b.begun {
		b.begun = true
		b.failed.Store(false)
		b.epoch.Store(reconnects)
	}
	if b.failed.Load() || reconnects != b.epoch.Load() || !b.nc.IsConnected() {
		return errBatchStopped
	}
	if !b.captured[m.Subject] {
		// A subject no stream captures gets an error ack while later
		// messages of the same event stream, on other subjects, are
		// stored: stop the batch before sending it instead.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := b.js.StreamNameBySubject(ctx, m.Subject)
		cancel()
		if err != nil {
			return fmt.Errorf("subject %s: %w", m.Subject, err)
		}
		b.captured[m.Subject] = true
	}
	msg := &nats.Msg{Subject: m.Subject, Data: m.Body, Header: make(nats.Header, len(m.Headers)+1)}
	for _, h := range m.Headers {
		msg.Header[h.Key] = []string{h.Value}
	}
	f, err := b.js.PublishMsgAsync(msg, jetstream.WithMsgID(m.ID), jetstream.WithRetryAttempts(0))
	if err != nil {
		return err
	}
	b.futures = append(b.futures, f)
	b.streams = append(b.streams, m.Stream)
	return nil
}

// Confirm implements Broker.
func (b *JetStream) Confirm(ctx context.Context, timeout time.Duration) (Stats, error) {
	defer b.Reset()
	var (
		st       Stats
		firstErr error
		timer    = time.NewTimer(timeout)
		failedIn = map[string]bool{} // streams with a failed message so far
	)
	defer timer.Stop()
	for i, f := range b.futures {
		if firstErr != nil && errors.Is(firstErr, errAckTimeout) {
			break
		}
		select {
		case ack := <-f.Ok():
			st.Acked++
			if ack.Duplicate {
				st.Duplicates++
			} else if failedIn[b.streams[i]] {
				st.Reordered++
			}
		case err := <-f.Err():
			failedIn[b.streams[i]] = true
			if firstErr == nil {
				firstErr = fmt.Errorf("message %d of %d: %w", i+1, len(b.futures), err)
			}
		case <-timer.C:
			firstErr = fmt.Errorf("%w after %s (%d of %d acknowledged)", errAckTimeout, timeout, st.Acked, len(b.futures))
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
	return st, firstErr
}

var errAckTimeout = errors.New("no acknowledgement")

// Reset implements Broker.
func (b *JetStream) Reset() {
	b.futures, b.streams, b.begun = b.futures[:0], b.streams[:0], false
}

// EnsureStream creates the JetStream stream name capturing subjects if it
// does not exist, with the duplicate window dup (JetStream's default, two
// minutes, if 0). An existing stream is left as it is.
func EnsureStream(ctx context.Context, js jetstream.JetStream, name string, subjects []string, dup time.Duration) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, err
	}
	return js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects, Duplicates: dup, Storage: jetstream.FileStorage})
}
