package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The names of what hopper keeps in JetStream.
const (
	StreamName   = "HOPPER_JOBS"    // the work-queue stream of jobs
	ResultBucket = "hopper-results" // what the host that ran an attempt says of it
	subjectRoot  = "hopper.jobs"    // hopper.jobs.<priority>.<key token>
	// DuplicateWindow is how long the stream remembers a message id: a job
	// re-published within it (a crash between publish and the rename that
	// records it) is dropped.
	DuplicateWindow = 10 * time.Minute
	// ResultTTL is how long an answer stays in the bucket: the origin host
	// reads it at once, unless it is down.
	ResultTTL = 7 * 24 * time.Hour
)

// Node is this host's place in the cluster: its NATS connection, its
// embedded server when it runs one, and the JetStream handles.
type Node struct {
	cfg  Config
	name string
	srv  *server.Server // nil when joined with URL
	nc   *nats.Conn
	js   jetstream.JetStream
	log  *slog.Logger

	closeOnce sync.Once
	// life ends when the node closes: the answer watch runs until then.
	life    context.Context
	endLife context.CancelFunc
	answers answerWatch
	bg      sync.WaitGroup // the answer watch

	mu     sync.Mutex // guards stream and kv, set once Provision succeeds
	stream jetstream.Stream
	kv     jetstream.KeyValue
}

// handles returns the stream and bucket, or ErrNoQuorum before Provision
// has made them.
func (n *Node) handles() (jetstream.Stream, jetstream.KeyValue, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stream == nil || n.kv == nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNoQuorum, errNotProvisioned)
	}
	return n.stream, n.kv, nil
}

// Start embeds a NATS server (storeDir holds its JetStream files) or
// connects to cfg.URL, and returns the connected Node. It does not wait for
// the cluster to have quorum: Provision does.
func Start(cfg Config, storeDir string, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, name: cfg.NodeName(), log: log}
	n.life, n.endLife = context.WithCancel(context.Background())
	opts := []nats.Option{
		nats.Name("hopper " + n.name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("cluster: disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("cluster: reconnected to NATS", "url", c.ConnectedUrlRedacted()) }),
	}
	url := cfg.URL
	if cfg.Embedded() {
		token := rand.Text()
		srv, err := embed(cfg, n.name, storeDir, token)
		if err != nil {
			return nil, err
		}
		n.srv = srv
		opts = append(opts, nats.InProcessServer(srv), nats.Token(token))
		url = ""
	} else {
		if cfg.Credentials != "" {
			opts = append(opts, nats.UserCredentials(cfg.Credentials))
		}
		if cfg.TLSCA != "" {
			opts = append(opts, nats.RootCAs(cfg.TLSCA))
		}
		if cfg.TLSCert != "" {
			opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
		}
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("cluster: connect to NATS: %w", err)
	}
	n.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("cluster: JetStream: %w", err)
	}
	n.js = js
	return n, nil
}

// embed starts the embedded NATS server: JetStream in storeDir, routes on
// cfg.Listen to cfg.Routes, the client port only at cfg.ClientListen.
func embed(cfg Config, name, storeDir, token string) (*server.Server, error) {
	o := &server.Options{
		ServerName: name,
		JetStream:  true,
		StoreDir:   filepath.Join(storeDir, "jetstream"),
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
	}
	if cfg.ClientListen != "" {
		host, port, err := splitPort(cfg.ClientListen)
		if err != nil {
			return nil, &ConfigError{Field: "cluster.client_listen", Err: err}
		}
		o.DontListen, o.Host, o.Port = false, host, port
	}
	if cfg.Listen != "" {
		if o.DontListen {
			// NATS starts its routes only once its client listener is up:
			// give it one on loopback, on a port of its choosing, that
			// answers only the token hopper connects with.
			o.DontListen, o.Host, o.Port = false, "127.0.0.1", server.RANDOM_PORT
			o.Authorization = token
		}
		host, port, err := splitPort(cfg.Listen)
		if err != nil {
			return nil, &ConfigError{Field: "cluster.listen", Err: err}
		}
		o.Cluster = server.ClusterOpts{Name: cfg.Name, Host: host, Port: port}
		if cfg.TLSCert != "" {
			// Mutual TLS: each side shows its certificate, and takes the
			// other's only if tls_ca signed it for the address it dials.
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, CaFile: cfg.TLSCA, Verify: true})
			if err != nil {
				return nil, &ConfigError{Field: "cluster.tls_cert", Err: err}
			}
			// As NATS's own cluster tls block: a route is a client too.
			tc.ClientAuth, tc.RootCAs = tls.RequireAndVerifyClientCert, tc.ClientCAs
			o.Cluster.TLSConfig, o.Cluster.TLSTimeout = tc, 5
		}
		if cfg.Secret != "" {
			o.Cluster.Username, o.Cluster.Password = routeUser, cfg.Secret
		}
		for _, r := range cfg.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, &ConfigError{Field: "cluster.routes", Err: err}
			}
			if cfg.Secret != "" && u.User == nil {
				u.User = url.UserPassword(routeUser, cfg.Secret)
			}
			o.Routes = append(o.Routes, u)
		}
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded NATS server: %w", err)
	}
	go srv.Start() // Start blocks in the client accept loop when there is one
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("cluster: the embedded NATS server did not start (is %s free?)", cfg.Listen)
	}
	return srv, nil
}

func splitPort(hostport string) (string, int, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number", p)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// routeUser is the user name routes authenticate as with cluster.secret.
const routeUser = "hopper"

// Name is this node's name in the cluster.
func (n *Node) Name() string { return n.name }

// Close closes the connection and stops the embedded server, if any. It
// may be called more than once.
func (n *Node) Close() { n.closeOnce.Do(n.close) }

func (n *Node) close() {
	n.endLife()
	if n.nc != nil {
		n.nc.Close()
	}
	n.bg.Wait()
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	}
}

// ErrNoQuorum says JetStream cannot answer: too few of the cluster's nodes
// are up (or reachable) to elect a leader.
var ErrNoQuorum = errors.New("the cluster has no quorum: too few of its hosts are reachable")

// noQuorum turns JetStream's "no answer" errors into ErrNoQuorum.
func noQuorum(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || strings.Contains(err.Error(), "temporarily unavailable") ||
		strings.Contains(err.Error(), "insufficient resources") || strings.Contains(err.Error(), "no suitable peers") ||
		strings.Contains(err.Error(), "no leader") {
		return fmt.Errorf("%w (%v)", ErrNoQuorum, err)
	}
	return err
}

// Provision creates the stream and the record bucket, or adopts them as
// another host created them, retrying until the cluster has elected a
// leader or ctx ends.
func (n *Node) Provision(ctx context.Context) error {
	replicas := n.cfg.replicas()
	sc := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "hopper's queue: one message per job, by priority and load key",
		Subjects:    []string{subjectRoot + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  DuplicateWindow,
	}
	kc := jetstream.KeyValueConfig{
		Bucket:      ResultBucket,
		Description: "hopper's answers, by job ID and attempt, until the origin host has written the record",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		History:     1,
		TTL:         ResultTTL,
	}
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		stream, err := n.js.CreateOrUpdateStream(attempt, sc)
		var kv jetstream.KeyValue
		if err == nil {
			kv, err = n.js.CreateOrUpdateKeyValue(attempt, kc)
		}
		cancel()
		if err == nil {
			n.mu.Lock()
			n.stream, n.kv = stream, kv
			n.mu.Unlock()
			n.bg.Go(func() { n.watchAnswers(n.life, kv) })
			return nil
		}
		n.log.Info("cluster: waiting for the cluster to have a leader", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: create the stream %s and bucket %s: %w", StreamName, ResultBucket, noQuorum(err))
		case <-time.After(250 * time.Millisecond):
		}
	}
}
