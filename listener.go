package pges

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyChannel is the channel the events_notify trigger (migration 00007)
// notifies, with the tenant id as payload (” for every tenant).
const notifyChannel = "es_events"

// listenerAppName names the listening connection in pg_stat_activity.
const listenerAppName = "pges-listener"

// listener holds the one LISTEN connection a Store uses for all its
// subscriptions. It runs while at least one subscription is registered and
// reconnects with backoff when the connection is lost; after every
// (re)connect it wakes every subscription, since notifications sent while it
// was away are gone.
type listener struct {
	connect func(ctx context.Context) (*pgx.Conn, error)

	mu      sync.Mutex
	waiters map[*waiter]struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// waiter is one subscription's wake-up: a channel holding at most one
// pending signal, so a burst of notifications costs one read.
type waiter struct {
	tenantID string
	ch       chan struct{}
}

func (w *waiter) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

func newListener(connect func(ctx context.Context) (*pgx.Conn, error)) *listener {
	return &listener{connect: connect, waiters: map[*waiter]struct{}{}}
}

// add registers a subscription of tenantID, starting the listening loop if
// it is the first.
func (l *listener) add(tenantID string) *waiter {
	w := &waiter{tenantID: tenantID, ch: make(chan struct{}, 1)}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waiters[w] = struct{}{}
	if l.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		l.cancel, l.done = cancel, make(chan struct{})
		go l.run(ctx, l.done)
	}
	return w
}

// remove unregisters w and stops the loop (closing its connection) after
// the last subscription leaves.
func (l *listener) remove(w *waiter) {
	l.mu.Lock()
	delete(l.waiters, w)
	var done chan struct{}
	if len(l.waiters) == 0 && l.cancel != nil {
		l.cancel()
		done = l.done
		l.cancel, l.done = nil, nil
	}
	l.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (l *listener) wake(tenantID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for w := range l.waiters {
		if tenantID == "" || w.tenantID == tenantID {
			w.wake()
		}
	}
}

func (l *listener) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := l.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		_ = err // the subscriptions' fallback poll covers the outage
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// listen connects, LISTENs and forwards notifications until the connection
// fails or ctx ends.
func (l *listener) listen(ctx context.Context) error {
	conn, err := l.connect(ctx)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	l.wake("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		l.wake(n.Payload)
	}
}
