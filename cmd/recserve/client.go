package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/recserve/recserve/catalog"
	recserveclient "github.com/recserve/recserve/clients/go"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
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
	return c.session(ctx, w, func(ctx context.Context, client *recserveclient.Client) (any, error) {
		ctx, cancel := c.bound(ctx)
		defer cancel()
		return fn(ctx, client)
	})
}

// session dials, runs fn, which bounds each of its calls with c.bound, and
// prints its result.
func (c *clientFlags) session(ctx context.Context, w io.Writer, fn func(context.Context, *recserveclient.Client) (any, error)) error {
	opts, err := c.options()
	if err != nil {
		return err
	}
	client, err := recserveclient.Dial(c.addr, opts...)
	if err != nil {
		return err
	}
	defer client.Close()
	out, err := fn(ctx, client)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// bound returns ctx bounded by -timeout.
func (c *clientFlags) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout > 0 {
		return context.WithTimeout(ctx, c.timeout)
	}
	return context.WithCancel(ctx)
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

const itemsUsage = `Usage: recserve items <action> [flags]

Actions:
  upsert -id ID [-category C] [-unavailable] [-attr k=v ...]   add an item or replace it whole
  upsert -file items.jsonl                                     add or replace the items of a file, one JSON object
                                                               a line (id or item_id, category, available,
                                                               attributes), checked whole, sent 1000 a call
  available -id ID[,ID...] [-false]                            mark items available (-false: unavailable)
  delete -id ID[,ID...]                                        delete items: no version returns them again
  get -id ID [-model M]                                        an item as the server serves it now

Every action takes the client flags: -addr (default 127.0.0.1:9090), -timeout, -tls, -cacert,
-cert, -key, -servername; credentials from $RECSERVE_API_KEY or $RECSERVE_TOKEN. Changes need
the catalog role, get the recommend role.
`

const usersUsage = `Usage: recserve users erase -user ID

Erases a user's data: real-time state, cached responses and, through the catalog topic, the
user's events in the trainer's training data. Needs the admin role. Takes the client flags
(-addr, -timeout, -tls, -cacert, -cert, -key, -servername).
`

func runItems(ctx context.Context, args []string) error { return itemsCmd(ctx, args, os.Stdout) }
func runUsers(ctx context.Context, args []string) error { return usersCmd(ctx, args, os.Stdout) }

// accepted is what the catalog changes print.
type accepted struct {
	Accepted int `json:"accepted"`
	// Batches is the number of calls a change took (upsert -file).
	Batches int `json:"batches,omitempty"`
}

// itemsCmd runs one catalog action and prints the answer as JSON to w.
func itemsCmd(ctx context.Context, args []string, w io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(os.Stderr, itemsUsage)
		return flag.ErrHelp
	}
	action, args := args[0], args[1:]
	switch action {
	case "upsert":
		return itemsUpsertCmd(ctx, args, w)
	case "available":
		return itemsAvailableCmd(ctx, args, w)
	case "delete":
		return itemsDeleteCmd(ctx, args, w)
	case "get":
		return itemsGetCmd(ctx, args, w)
	}
	fmt.Fprint(os.Stderr, itemsUsage)
	return fmt.Errorf("unknown action %q (want upsert, available, delete or get)", action)
}

// parseAction parses an action's flags and refuses positional arguments, which
// would otherwise be ignored.
func parseAction(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (ids go in -id)", fs.Arg(0))
	}
	return nil
}

func itemsUpsertCmd(ctx context.Context, args []string, w io.Writer) error {
	var (
		cf   clientFlags
		it   recserveclient.CatalogItem
		file string
	)
	fs := flag.NewFlagSet("items upsert", flag.ContinueOnError)
	cf.register(fs)
	fs.StringVar(&it.ID, "id", "", "item id (required unless -file)")
	fs.StringVar(&it.Category, "category", "", "category of the item (default: none)")
	fs.BoolVar(&it.Unavailable, "unavailable", false, "add the item unavailable: not recommended unless a filter asks for it")
	fs.Func("attr", "attribute key=value, e.g. -attr price=9.90 (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q: want key=value", s)
		}
		if _, dup := it.Attributes[k]; dup {
			return fmt.Errorf("key %q given twice", k)
		}
		if it.Attributes == nil {
			it.Attributes = map[string]string{}
		}
		it.Attributes[k] = v
		return nil
	})
	fs.StringVar(&file, "file", "", `items to upsert, one JSON object a line: id (or item_id), category, available, attributes ("-": stdin); checked whole, then sent 1000 a call, each within -timeout`)
	if err := parseAction(fs, args); err != nil {
		return err
	}
	if file != "" {
		if it.ID != "" || it.Category != "" || it.Unavailable || it.Attributes != nil {
			return errors.New("-file cannot be combined with -id, -category, -unavailable or -attr")
		}
		items, lines, err := readItemsFile(file)
		if err != nil {
			return err
		}
		return cf.session(ctx, w, func(ctx context.Context, c *recserveclient.Client) (any, error) {
			return cf.inBatches(ctx, len(items), lines, func(ctx context.Context, lo, hi int) (int, error) {
				return c.UpsertItems(ctx, items[lo:hi])
			})
		})
	}
	if it.ID == "" {
		return errors.New("-id (or -file) is required")
	}
	return cf.call(ctx, w, func(ctx context.Context, c *recserveclient.Client) (any, error) {
		n, err := c.UpsertItems(ctx, []recserveclient.CatalogItem{it})
		if err != nil {
			return nil, err
		}
		return accepted{Accepted: n}, nil
	})
}

func itemsAvailableCmd(ctx context.Context, args []string, w io.Writer) error {
	var (
		cf          clientFlags
		ids         string
		unavailable bool
	)
	fs := flag.NewFlagSet("items available", flag.ContinueOnError)
	cf.register(fs)
	fs.StringVar(&ids, "id", "", "comma-separated item ids (required)")
	fs.BoolVar(&unavailable, "false", false, "mark the items unavailable (default: available)")
	if err := parseAction(fs, args); err != nil {
		return err
	}
	list := splitList(ids)
	if len(list) == 0 {
		return errors.New("-id is required")
	}
	return cf.session(ctx, w, func(ctx context.Context, c *recserveclient.Client) (any, error) {
		return cf.inBatches(ctx, len(list), nil, func(ctx context.Context, lo, hi int) (int, error) {
			return c.SetAvailability(ctx, list[lo:hi], !unavailable)
		})
	})
}

func itemsDeleteCmd(ctx context.Context, args []string, w io.Writer) error {
	var (
		cf  clientFlags
		ids string
	)
	fs := flag.NewFlagSet("items delete", flag.ContinueOnError)
	cf.register(fs)
	fs.StringVar(&ids, "id", "", "comma-separated item ids (required)")
	if err := parseAction(fs, args); err != nil {
		return err
	}
	list := splitList(ids)
	if len(list) == 0 {
		return errors.New("-id is required")
	}
	return cf.session(ctx, w, func(ctx context.Context, c *recserveclient.Client) (any, error) {
		return cf.inBatches(ctx, len(list), nil, func(ctx context.Context, lo, hi int) (int, error) {
			return c.DeleteItems(ctx, list[lo:hi])
		})
	})
}

func itemsGetCmd(ctx context.Context, args []string, w io.Writer) error {
	var (
		cf    clientFlags
		id    string
		model string
	)
	fs := flag.NewFlagSet("items get", flag.ContinueOnError)
	cf.register(fs)
	fs.StringVar(&id, "id", "", "item id (required)")
	fs.StringVar(&model, "model", "", "model name (default: the server's default model)")
	if err := parseAction(fs, args); err != nil {
		return err
	}
	if id == "" {
		return errors.New("-id is required")
	}
	return cf.call(ctx, w, func(ctx context.Context, c *recserveclient.Client) (any, error) {
		return c.GetItem(ctx, id, model)
	})
}

// usersCmd runs one user action (erase) and prints the answer as JSON to w.
func usersCmd(ctx context.Context, args []string, w io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(os.Stderr, usersUsage)
		return flag.ErrHelp
	}
	if args[0] != "erase" {
		fmt.Fprint(os.Stderr, usersUsage)
		return fmt.Errorf("unknown action %q (want erase)", args[0])
	}
	return usersEraseCmd(ctx, args[1:], w)
}

func usersEraseCmd(ctx context.Context, args []string, w io.Writer) error {
	var (
		cf   clientFlags
		user string
	)
	fs := flag.NewFlagSet("users erase", flag.ContinueOnError)
	cf.register(fs)
	fs.StringVar(&user, "user", "", "user id (required)")
	if err := parseAction(fs, args); err != nil {
		return err
	}
	if user == "" {
		return errors.New("-user is required")
	}
	return cf.call(ctx, w, func(ctx context.Context, c *recserveclient.Client) (any, error) {
		if err := c.EraseUser(ctx, user); err != nil {
			return nil, err
		}
		return struct {
			UserID string `json:"user_id"`
			Erased bool   `json:"erased"`
		}{user, true}, nil
	})
}

// inBatches sends n entries in calls of at most recserveclient.MaxCatalogBatch,
// each bounded by -timeout, and sums what the server accepted. lines, if not
// nil, are the entries' line numbers in the input file, for error messages. A
// failed batch ends the run; the batches before it stay applied.
func (c *clientFlags) inBatches(ctx context.Context, n int, lines []int, send func(ctx context.Context, lo, hi int) (int, error)) (accepted, error) {
	var out accepted
	total := (n + recserveclient.MaxCatalogBatch - 1) / recserveclient.MaxCatalogBatch
	for lo := 0; lo < n; lo += recserveclient.MaxCatalogBatch {
		hi := min(lo+recserveclient.MaxCatalogBatch, n)
		bctx, cancel := c.bound(ctx)
		got, err := send(bctx, lo, hi)
		cancel()
		if err != nil {
			if total == 1 && lines == nil {
				return out, err
			}
			where := fmt.Sprintf("entries %d to %d", lo+1, hi)
			if lines != nil {
				where = fmt.Sprintf("lines %d to %d", lines[lo], lines[hi-1])
				if i, ok := badEntry(err); ok && i < hi-lo {
					where += fmt.Sprintf("; items[%d] is line %d", i, lines[lo+i])
				}
			}
			if total == 1 {
				return out, fmt.Errorf("%s: %w", where, err)
			}
			return out, fmt.Errorf("batch %d of %d (%s) failed, %d accepted before it: %w",
				out.Batches+1, total, where, out.Accepted, err)
		}
		out.Accepted += got
		out.Batches++
	}
	return out, nil
}

// badEntry returns i of the "items[i]..." field an INVALID_ARGUMENT's
// BadRequest detail names.
func badEntry(err error) (int, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return 0, false
	}
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		for _, v := range br.GetFieldViolations() {
			rest, ok := strings.CutPrefix(v.GetField(), "items[")
			if !ok {
				continue
			}
			num, _, ok := strings.Cut(rest, "]")
			if i, err := strconv.Atoi(num); ok && err == nil {
				return i, true
			}
		}
	}
	return 0, false
}

// itemLine is one line of an upsert -file: the registry's items.jsonl format,
// with item_id accepted for id.
type itemLine struct {
	ID         string            `json:"id"`
	ItemID     string            `json:"item_id"`
	Category   string            `json:"category"`
	Available  *bool             `json:"available"`
	Attributes map[string]string `json:"attributes"`
}

// readItemsFile reads and checks an upsert -file whole ("-": stdin) and returns
// its items with their line numbers. Blank lines are skipped.
func readItemsFile(path string) ([]recserveclient.CatalogItem, []int, error) {
	var r io.Reader = os.Stdin
	name := "stdin"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		r, name = f, path
	}
	br := bufio.NewReader(r)
	var (
		items []recserveclient.CatalogItem
		lines []int
	)
	for n := 1; ; n++ {
		b, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(bytes.TrimSpace(b)) > 0 {
			it, lerr := decodeItemLine(b)
			if lerr != nil {
				return nil, nil, fmt.Errorf("%s line %d: %w", name, n, lerr)
			}
			items, lines = append(items, it), append(lines, n)
		}
		if err == io.EOF {
			break
		}
	}
	if len(items) == 0 {
		return nil, nil, fmt.Errorf("%s: no items", name)
	}
	return items, lines, nil
}

// decodeItemLine decodes and checks one line of an upsert -file, with the limits
// the server applies, so that a bad line fails the file before any batch is sent.
func decodeItemLine(b []byte) (recserveclient.CatalogItem, error) {
	var l itemLine
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return recserveclient.CatalogItem{}, fmt.Errorf("bad JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return recserveclient.CatalogItem{}, errors.New("bad JSON: data after the object")
	}
	id := l.ID
	switch {
	case l.ID != "" && l.ItemID != "" && l.ID != l.ItemID:
		return recserveclient.CatalogItem{}, fmt.Errorf("id %q and item_id %q differ", l.ID, l.ItemID)
	case id == "":
		id = l.ItemID
	}
	avail := l.Available == nil || *l.Available
	if err := catalog.ValidateItem("item", &recservev1.CatalogItem{
		ItemId: id, Category: l.Category, Available: &avail, Attributes: l.Attributes,
	}); err != nil {
		return recserveclient.CatalogItem{}, err
	}
	return recserveclient.CatalogItem{ID: id, Category: l.Category, Unavailable: !avail, Attributes: l.Attributes}, nil
}
