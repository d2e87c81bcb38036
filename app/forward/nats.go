package forward

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSOptions configure a JetStream sink.
type NATSOptions struct {
	URL             string
	Stream          string
	SubjectPrefix   string
	CredentialsFile string
	Token           string
	User, Password  string
	DuplicateWindow time.Duration
	// Timeout bounds one publish and its ack (default 10s).
	Timeout time.Duration
}

// NATS publishes each event to JetStream with Nats-Msg-Id = the event id;
// the stream's duplicate window drops the copies a redelivery or a second
// instance publishes.
type NATS struct {
	o NATSOptions

	mu sync.Mutex
	nc *nats.Conn
	js jetstream.JetStream
}

// NewNATS builds the sink; it connects on the first delivery, so a NATS
// server that is down delays the feed, not the start.
func NewNATS(o NATSOptions) (*NATS, error) {
	if o.URL == "" || o.Stream == "" || o.SubjectPrefix == "" {
		return nil, errors.New("nats sink needs url, stream and subject_prefix")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 10 * time.Minute
	}
	return &NATS{o: o}, nil
}

// Subject is where an event is published.
func (n *NATS) Subject(d *Delivery) string {
	if d.Type == TypeInbound {
		return n.o.SubjectPrefix + ".inbound"
	}
	return n.o.SubjectPrefix + ".status." + subjectToken(d.Event.Status)
}

// subjectToken keeps a status usable as one subject token.
func subjectToken(s string) string {
	if s == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r > '~' {
			return '_'
		}
		return r
	}, s)
}

func (n *NATS) connect(ctx context.Context) (jetstream.JetStream, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.js != nil && !n.nc.IsClosed() {
		return n.js, nil
	}
	opts := []nats.Option{nats.Name("plivo-dlr"), nats.MaxReconnects(-1), nats.Timeout(n.o.Timeout)}
	switch {
	case n.o.CredentialsFile != "":
		opts = append(opts, nats.UserCredentials(n.o.CredentialsFile))
	case n.o.Token != "":
		opts = append(opts, nats.Token(n.o.Token))
	case n.o.User != "":
		opts = append(opts, nats.UserInfo(n.o.User, n.o.Password))
	}
	nc, err := nats.Connect(n.o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// Bind to the stream, creating it when missing. Two instances starting
	// together may both try to create it: the loser binds to the winner's.
	if _, err := js.Stream(ctx, n.o.Stream); errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       n.o.Stream,
			Subjects:   []string{n.o.SubjectPrefix + ".>"},
			Duplicates: n.o.DuplicateWindow,
			Storage:    jetstream.FileStorage,
		})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			nc.Close()
			return nil, fmt.Errorf("create stream %s: %w", n.o.Stream, err)
		}
	} else if err != nil {
		nc.Close()
		return nil, fmt.Errorf("look up stream %s: %w", n.o.Stream, err)
	}
	n.nc, n.js = nc, js
	return js, nil
}

// Deliver publishes one event and waits for JetStream's ack.
func (n *NATS) Deliver(ctx context.Context, d *Delivery) error {
	ctx, cancel := context.WithTimeout(ctx, n.o.Timeout)
	defer cancel()
	js, err := n.connect(ctx)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(n.Subject(d))
	msg.Data = d.Body
	msg.Header.Set("Content-Type", "application/json")
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(d.ID), jetstream.WithExpectStream(n.o.Stream)); err != nil {
		return fmt.Errorf("publish to %s: %w", msg.Subject, err)
	}
	return nil
}

// Close drops the connection.
func (n *NATS) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nc != nil {
		n.nc.Close()
	}
	return nil
}
