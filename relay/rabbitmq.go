package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQ publishes a relay's messages to a RabbitMQ exchange with
// publisher confirms: the message's subject is the routing key, the event
// id its message id (RabbitMQ does not de-duplicate: consumers drop a
// re-send by message id), the headers AMQP headers, persistent. Messages
// are published mandatory: one that no queue takes comes back and fails the
// batch (the relay retries it), as an unacknowledged one does.
//
// It dials url itself, and again after the connection or channel closed.
// A batch stops sending at the first failure, as with JetStream.
type RabbitMQ struct {
	url, exchange string

	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
	pending []*amqp.DeferredConfirmation
	ids     []string
	broken  error
}

// NewRabbitMQ returns a Broker publishing to exchange (which must exist;
// a topic exchange routes by the subject's tokens) at url.
func NewRabbitMQ(url, exchange string) (*RabbitMQ, error) {
	if url == "" {
		return nil, invalid("a RabbitMQ URL is required")
	}
	b := &RabbitMQ{url: url, exchange: exchange}
	if err := b.open(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *RabbitMQ) open() error {
	if b.ch != nil && !b.ch.IsClosed() && !b.conn.IsClosed() {
		return nil
	}
	b.Close()
	conn, err := amqp.DialConfig(b.url, amqp.Config{Heartbeat: 5 * time.Second, Properties: amqp.Table{"connection_name": "pges-relay"}})
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		_ = conn.Close()
		return err
	}
	b.conn, b.ch = conn, ch
	// Returns come before the confirm of the same message; the buffer
	// holds a batch's worth so the connection's reader never waits on it.
	b.returns = ch.NotifyReturn(make(chan amqp.Return, 8192))
	return nil
}

// Close closes the connection.
func (b *RabbitMQ) Close() {
	if b.conn != nil {
		_ = b.conn.Close()
	}
	b.conn, b.ch = nil, nil
}

// Conn returns the current connection (nil while closed).
func (b *RabbitMQ) Conn() *amqp.Connection { return b.conn }

// Publish implements Broker.
func (b *RabbitMQ) Publish(m *Message) error {
	if b.broken != nil {
		return b.broken
	}
	if len(b.pending) == 0 {
		if err := b.open(); err != nil {
			return err
		}
	}
	headers := make(amqp.Table, len(m.Headers))
	for _, h := range m.Headers {
		if h.Key != "Content-Type" {
			headers[h.Key] = h.Value
		}
	}
	dc, err := b.ch.PublishWithDeferredConfirmWithContext(context.Background(), b.exchange, m.Subject, true, false, amqp.Publishing{
		MessageId: m.ID, ContentType: "application/json", DeliveryMode: amqp.Persistent, Headers: headers, Body: m.Body})
	if err != nil {
		b.broken = err
		return err
	}
	b.pending = append(b.pending, dc)
	b.ids = append(b.ids, m.ID)
	return nil
}

var errReturned = errors.New("no queue took the message (returned unroutable)")

// Confirm implements Broker.
func (b *RabbitMQ) Confirm(ctx context.Context, timeout time.Duration) (Stats, error) {
	defer b.Reset()
	var st Stats
	var firstErr error
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	returned := 0
	for i, dc := range b.pending {
	wait:
		select {
		case <-dc.Done():
			if dc.Acked() {
				st.Acked++
			} else if firstErr == nil {
				firstErr = fmt.Errorf("message %d of %d (event %s): not confirmed by RabbitMQ", i+1, len(b.pending), b.ids[i])
			}
		case _, ok := <-b.returns:
			if !ok { // the channel closed: its confirms end as nacks
				b.returns = nil
			} else {
				returned++
			}
			goto wait
		case <-timer.C:
			b.Close() // its unconfirmed messages are in doubt: start afresh
			return st, fmt.Errorf("%w after %s (%d of %d confirmed)", errAckTimeout, timeout, st.Acked, len(b.pending))
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
	for drained := false; !drained; {
		select {
		case _, ok := <-b.returns:
			if !ok {
				b.returns, drained = nil, true
			} else {
				returned++
			}
		default:
			drained = true
		}
	}
	if returned > 0 && firstErr == nil {
		firstErr = fmt.Errorf("%d of %d messages: %w", returned, len(b.pending), errReturned)
	}
	if firstErr == nil && b.broken != nil {
		firstErr = b.broken
	}
	return st, firstErr
}

// Reset implements Broker.
func (b *RabbitMQ) Reset() {
	b.pending, b.ids, b.broken = b.pending[:0], b.ids[:0], nil
}
