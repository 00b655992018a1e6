package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"

	recserveclient "github.com/recserve/recserve/clients/go"
)

// The client commands call a running server with clients/go and print the answer
// as JSON on stdout.

func runRecommend(ctx context.Context, args []string) error {
	return recommendCmd(ctx, args, os.Stdout)
}
func runSimilar(ctx context.Context, args []string) error { return similarCmd(ctx, args, os.Stdout) }
func runEvents(ctx context.Context, args []string) error  { return eventsCmd(ctx, args, os.Stdout) }

// clientFlags are the connection flags every client command takes. Credentials
// come from the environment, not flags, to stay out of process listings:
// RECSERVE_API_KEY (x-api-key) or RECSERVE_TOKEN (a JWT); both need TLS.
type clientFlags struct {
	addr       string
	timeout    time.Duration
	tls        bool
	caCert     string
	cert, key  string
	serverName string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:9090", `server gRPC address (any gRPC target, e.g. "dns:///recserve-headless:9090")`)
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "deadline of the call, retries included")
	fs.BoolVar(&c.tls, "tls", false, "connect with TLS, trusting the system roots (implied by -cacert and -cert; default plaintext)")
	fs.StringVar(&c.caCert, "cacert", "", "CA certificate (PEM) to verify the server with")
	fs.StringVar(&c.cert, "cert", "", "client certificate (PEM), for servers that require mTLS")
	fs.StringVar(&c.key, "key", "", "client key (PEM) of -cert")
	fs.StringVar(&c.serverName, "servername", "", "name to verify in the server certificate (default: the -addr host)")
}

// options turns the flags and the credentials in the environment into client options.
func (c *clientFlags) options() ([]recserveclient.Option, error) {
	var opts []recserveclient.Option
	if c.tls || c.caCert != "" || c.cert != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.serverName}
		if c.caCert != "" {
			pem, err := os.ReadFile(c.caCert)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-cacert %s: no PEM certificate", c.caCert)
			}
		}
		if c.cert != "" || c.key != "" {
			pair, err := tls.LoadX509KeyPair(c.cert, c.key)
			if err != nil {
				return nil, fmt.Errorf("-cert/-key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, recserveclient.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	if key := os.Getenv("RECSERVE_API_KEY"); key != "" {
		opts = append(opts, recserveclient.WithAPIKey(key))
	}
	if token := os.Getenv("RECSERVE_TOKEN"); token != "" {
		opts = append(opts, recserveclient.WithBearerToken(token))
	}
	return opts, nil
}

// call dials, runs fn with a context bounded by -timeout, and prints its result.
func (c *clientFlags) call(ctx context.Context, w io.Writer, fn func(context.Context, *recserveclient.Client) (any, error)) error {
	opts, err := c.options()
	if err != nil {
		return err
	}
	client, err := recserveclient.Dial(c.addr, opts...)
	if err != nil {
		return err
	}
	defer client.Close()
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	out, err := fn(ctx, client)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// queryFlags registers the flags of a recserveclient.Query.
func queryFlags(fs *flag.FlagSet, q *recserveclient.Query) {
	fs.StringVar(&q.Model, "model", "", "model name (default: the server's default model)")
	fs.IntVar(&q.N, "n", 10, "number of items, 1 to 1000")
	fs.Func("include-categories", "comma-separated categories to restrict to", func(s string) error {
		q.Filter.IncludeCategories = splitList(s)
		return nil
	})
	fs.Func("exclude-categories", "comma-separated categories to leave out", func(s string) error {
		q.Filter.ExcludeCategories = splitList(s)
		return nil
	})
	fs.Func("exclude-items", "comma-separated item ids to leave out", func(s string) error {
		q.Filter.ExcludeItemIDs = splitList(s)
		return nil
	})
	fs.BoolVar(&q.Filter.IncludeUnavailable, "include-unavailable", false, "also return items marked unavailable")
}

func recommendCmd(ctx context.Context, args []string, w io.Writer) error {
	var (
		cf   clientFlags
		q    recserveclient.Query
		user string
	)
	fs := flag.NewFlagSet("recommend", flag.ContinueOnError)
	cf.register(fs)
	queryFlags(fs, &q)
	fs.StringVar(&user, "user", "", "user id (required)")
	fs.BoolVar(&q.IncludeSeen, "include-seen", false, "also return items the user already interacted with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if user == "" {
		return errors.New("-user is required")
	}
	return cf.call(ctx, w, func(ctx context.Context, c *recserveclient.Client) (any, error) {
		return c.Recommend(ctx, user, q)
	})
}

func similarCmd(ctx context.Context, args []string, w io.Writer) error {
	var (
		cf   clientFlags
		q    recserveclient.Query
		item string
	)
	fs := flag.NewFlagSet("similar", flag.ContinueOnError)
	cf.register(fs)
	queryFlags(fs, &q)
	fs.StringVar(&item, "item", "", "item id (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if item == "" {
		return errors.New("-item is required")
	}
	return cf.call(ctx, w, func(ctx context.Context, c *recserveclient.Client) (any, error) {
		return c.SimilarItems(ctx, item, q)
	})
}

func eventsCmd(ctx context.Context, args []string, w io.Writer) error {
	var (
		cf clientFlags
		ev recserveclient.Event
	)
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	cf.register(fs)
	fs.StringVar(&ev.UserID, "user", "", "user id (required)")
	fs.StringVar(&ev.ItemID, "item", "", "item id (required)")
	fs.Func("type", "view, click, add_to_cart, purchase, rating or impression (required)", func(s string) (err error) {
		ev.Type, err = recserveclient.ParseEventType(s)
		return err
	})
	fs.Float64Var(&ev.Weight, "weight", 0, "interaction strength; the rating for -type rating (0: the type's default)")
	fs.StringVar(&ev.ID, "id", "", "event id; sending the same id again counts once (default: a random id)")
	fs.StringVar(&ev.RequestID, "request-id", "", "request id of the recommendation that led to the event")
	fs.StringVar(&ev.Model, "model", "", "model of that recommendation")
	fs.StringVar(&ev.ModelVersion, "model-version", "", "model version of that recommendation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case ev.UserID == "":
		return errors.New("-user is required")
	case ev.ItemID == "":
		return errors.New("-item is required")
	case ev.Type == "":
		return errors.New("-type is required")
	}
	return cf.call(ctx, w, func(ctx context.Context, c *recserveclient.Client) (any, error) {
		evs := []recserveclient.Event{ev}
		n, err := c.RecordEvents(ctx, evs)
		if err != nil {
			return nil, err
		}
		return struct {
			Accepted int    `json:"accepted"`
			EventID  string `json:"event_id"`
		}{n, evs[0].ID}, nil
	})
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
