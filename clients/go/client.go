// Package recserveclient is the Go client of recserve's gRPC API.
//
// A Client holds one gRPC channel: one HTTP/2 connection per server address,
// multiplexing every concurrent call. Create one Client per process, share it between
// goroutines and Close it at shutdown; dialling per request throws the connections away.
//
// Dial configures the channel with a service config that
//
//   - balances calls round-robin over every address the target resolves to. A bare
//     "host:port" target resolves through DNS (as "dns:///host:port"), so pointing the
//     client at a Kubernetes headless Service (the Helm chart's "<release>-headless")
//     spreads calls over all server pods instead of pinning one connection to one pod;
//   - retries calls that fail with UNAVAILABLE, with exponential backoff and retry
//     throttling (see RetryPolicy). Recommend, SimilarItems and BatchRecommend only
//     read, so retrying them is always safe. RecordEvents is retried as well: every
//     event carries an id and events with an id already seen are counted once
//     downstream, so a batch the broker took before the reply was lost is not counted
//     twice. The client assigns an id to every event that has none before the first
//     attempt, so all attempts carry the same ids. The catalog calls and EraseUser
//     are retried as well: GetItem only reads, and UpsertItems, SetAvailability,
//     DeleteItems and EraseUser each set a state, so a change applied twice leaves
//     the same state (unless another writer changed the item in between);
//   - gives every call without a deadline a default one (WithTimeout), covering all
//     of its attempts.
//
// WithHedging sends the read calls to more than one server when the first is slow.
//
// The typed methods take and return plain Go values; the generated stubs are there
// for everything else (RecommendService, EventService, CatalogService, UserService,
// Conn). Errors are gRPC status errors: use status.Code(err).
package recserveclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// DefaultTimeout is the deadline of a call whose context has none.
const DefaultTimeout = 2 * time.Second

// readMethods are the calls that only read, in the form interceptors see them.
var readMethods = []string{
	recservev1.RecommendService_Recommend_FullMethodName,
	recservev1.RecommendService_SimilarItems_FullMethodName,
	recservev1.RecommendService_BatchRecommend_FullMethodName,
}

// RetryPolicy says how calls that fail with UNAVAILABLE are retried. The delay
// before retry n is random in [0, min(InitialBackoff*BackoffMultiplier^(n-1), MaxBackoff)).
// Retries stop for the whole client while more than half of its recent calls failed
// (the service config's retryThrottling), so an outage does not multiply the load.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt: 1 disables retries. gRPC caps it at 5.
	MaxAttempts       int
	InitialBackoff    time.Duration
	MaxBackoff        time.Duration
	BackoffMultiplier float64
}

// DefaultRetryPolicy is the policy Dial uses unless WithRetryPolicy replaces it.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 4, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, BackoffMultiplier: 2}
}

func (p RetryPolicy) validate() error {
	switch {
	case p.MaxAttempts < 1:
		return errors.New("recserveclient: retry policy: MaxAttempts must be at least 1")
	case p.MaxAttempts > 1 && (p.InitialBackoff <= 0 || p.MaxBackoff <= 0 || p.BackoffMultiplier <= 0):
		return errors.New("recserveclient: retry policy: backoffs and multiplier must be positive")
	}
	return nil
}

// HedgingPolicy sends a read call again, to the next server, when no answer came
// within Delay, up to MaxAttempts copies in flight; the first answer wins and the
// others are cancelled. An attempt failing with UNAVAILABLE starts the next one at
// once. Hedged calls are not also retried (gRFC A6 allows one or the other).
type HedgingPolicy struct {
	MaxAttempts int // 2 to 5
	Delay       time.Duration
}

// Option configures Dial.
type Option func(*options)

type options struct {
	timeout  time.Duration
	retry    RetryPolicy
	hedging  *HedgingPolicy
	creds    credentials.TransportCredentials
	dialOpts []grpc.DialOption
}

// WithTimeout sets the deadline given to calls whose context has none
// (default DefaultTimeout); 0 or less leaves such calls without a deadline.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithRetryPolicy replaces DefaultRetryPolicy.
func WithRetryPolicy(p RetryPolicy) Option { return func(o *options) { o.retry = p } }

// WithHedging hedges Recommend, SimilarItems and BatchRecommend: see HedgingPolicy.
// RecordEvents is never hedged. (grpc-go ignores a service config's hedgingPolicy,
// so the client does it in an interceptor with the same semantics.) The grpc.Header
// and grpc.Trailer call options cannot be used on hedged calls: concurrent attempts
// would write them at once.
func WithHedging(maxAttempts int, delay time.Duration) Option {
	return func(o *options) { o.hedging = &HedgingPolicy{MaxAttempts: maxAttempts, Delay: delay} }
}

// WithTransportCredentials secures the connections, e.g. with
// credentials.NewTLS(&tls.Config{...}). The default is plaintext.
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = c }
}

// WithDialOptions appends gRPC dial options, e.g. grpc.WithResolvers or per-RPC credentials.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// Client calls a recserve server. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	recs    recservev1.RecommendServiceClient
	events  recservev1.EventServiceClient
	catalog recservev1.CatalogServiceClient
	users   recservev1.UserServiceClient
}

// Dial returns a client of target, a gRPC target such as "recserve:9090",
// "dns:///recserve-headless.prod.svc.cluster.local:9090" or "127.0.0.1:9090". It does
// not wait for a connection: the first call connects, and calls wait (within their
// deadline) for a server to become reachable.
func Dial(target string, opts ...Option) (*Client, error) {
	o := options{timeout: DefaultTimeout, retry: DefaultRetryPolicy(), creds: insecure.NewCredentials()}
	for _, opt := range opts {
		opt(&o)
	}
	sc, err := o.serviceConfig()
	if err != nil {
		return nil, err
	}
	var interceptors []grpc.UnaryClientInterceptor
	if o.timeout > 0 {
		interceptors = append(interceptors, defaultDeadline(o.timeout))
	}
	if o.hedging != nil {
		interceptors = append(interceptors, hedge(*o.hedging, readMethods))
	}
	dialOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(o.creds),
		grpc.WithDefaultServiceConfig(sc),
		// The resolver's service config (DNS TXT records) must not replace ours.
		grpc.WithDisableServiceConfig(),
		grpc.WithChainUnaryInterceptor(interceptors...),
	}, o.dialOpts...)
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("recserveclient: %w", err)
	}
	return &Client{
		conn:    conn,
		recs:    recservev1.NewRecommendServiceClient(conn),
		events:  recservev1.NewEventServiceClient(conn),
		catalog: recservev1.NewCatalogServiceClient(conn),
		users:   recservev1.NewUserServiceClient(conn),
	}, nil
}

// Close closes the connections; calls in flight fail with CANCELED.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying channel, for other services on the same server (health,
// model admin) and for watching connectivity.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// RecommendService is the generated stub, sharing the client's channel and policies.
func (c *Client) RecommendService() recservev1.RecommendServiceClient { return c.recs }

// EventService is the generated stub, sharing the client's channel and policies.
func (c *Client) EventService() recservev1.EventServiceClient { return c.events }

// CatalogService is the generated stub, sharing the client's channel and policies.
func (c *Client) CatalogService() recservev1.CatalogServiceClient { return c.catalog }

// UserService is the generated stub, sharing the client's channel and policies.
func (c *Client) UserService() recservev1.UserServiceClient { return c.users }

// serviceConfig is the JSON service config of the channel
// (https://github.com/grpc/grpc/blob/master/doc/service_config.md).
func (o options) serviceConfig() (string, error) {
	if err := o.retry.validate(); err != nil {
		return "", err
	}
	if h := o.hedging; h != nil && (h.MaxAttempts < 2 || h.MaxAttempts > 5 || h.Delay < 0) {
		return "", errors.New("recserveclient: hedging: MaxAttempts must be 2 to 5 and Delay not negative")
	}
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method,omitempty"`
	}
	type retryPolicy struct {
		MaxAttempts          int      `json:"maxAttempts"`
		InitialBackoff       string   `json:"initialBackoff"`
		MaxBackoff           string   `json:"maxBackoff"`
		BackoffMultiplier    float64  `json:"backoffMultiplier"`
		RetryableStatusCodes []string `json:"retryableStatusCodes"`
	}
	type methodConfig struct {
		Name        []name       `json:"name"`
		RetryPolicy *retryPolicy `json:"retryPolicy,omitempty"`
	}
	var retry *retryPolicy
	if o.retry.MaxAttempts > 1 {
		retry = &retryPolicy{
			MaxAttempts:          o.retry.MaxAttempts,
			InitialBackoff:       duration(o.retry.InitialBackoff),
			MaxBackoff:           duration(o.retry.MaxBackoff),
			BackoffMultiplier:    o.retry.BackoffMultiplier,
			RetryableStatusCodes: []string{"UNAVAILABLE"},
		}
	}
	readRetry := retry
	if o.hedging != nil {
		readRetry = nil
	}
	sc := struct {
		LoadBalancingConfig []map[string]struct{} `json:"loadBalancingConfig"`
		MethodConfig        []methodConfig        `json:"methodConfig"`
		RetryThrottling     map[string]float64    `json:"retryThrottling"`
	}{
		LoadBalancingConfig: []map[string]struct{}{{"round_robin": {}}},
		MethodConfig: []methodConfig{
			{Name: []name{{Service: recservev1.RecommendService_ServiceDesc.ServiceName}}, RetryPolicy: readRetry},
			{Name: []name{{Service: recservev1.EventService_ServiceDesc.ServiceName}}, RetryPolicy: retry},
			{Name: []name{{Service: recservev1.CatalogService_ServiceDesc.ServiceName}}, RetryPolicy: retry},
			{Name: []name{{Service: recservev1.UserService_ServiceDesc.ServiceName}}, RetryPolicy: retry},
		},
		RetryThrottling: map[string]float64{"maxTokens": 10, "tokenRatio": 0.1},
	}
	b, err := json.Marshal(sc)
	return string(b), err
}

// duration formats d as a protobuf JSON Duration: "0.05s".
func duration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// defaultDeadline gives calls without a deadline one of d.
func defaultDeadline(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
