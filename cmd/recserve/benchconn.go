package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// h2conn is the load generator's gRPC client: unary calls of one method over
// one HTTP/2 connection (gRPC's wire format, framed with
// golang.org/x/net/http2), and no more than a load needs: no compression,
// retries or reconnects. It shares the machine's two processors with the
// server it measures, where grpc-go's client took 40–56 µs of CPU per request,
// and the hand-offs to its writer and from its reader goroutine woke the
// other processor for most of them.
//
// Calls are sent by whoever calls send, on the caller's goroutine; each
// finished call is passed to done on the connection's reader goroutine, which
// may send the next call itself, so a closed loop needs no other goroutine.
type h2conn struct {
	nc   net.Conn
	fr   *http2.Framer
	br   *bufio.Reader
	bw   *bufio.Writer
	head []byte // the request header block, the same for every call
	done func(c *h2conn, cl *call)
	// timeout is the calls' deadline: sent as grpc-timeout, and a call
	// answered later than that after it was sent fails with DeadlineExceeded.
	timeout time.Duration
	now     func() int64 // the clock of a call's times, in ns
	unacked uint32       // response bytes since the last window update; reader only
	exited  chan struct{}

	mu      sync.Mutex // guards writes and the fields below
	next    uint32     // the next stream id
	pending map[uint32]*call
	free    []*call
	err     error // why no more calls can be sent
}

// call is one request on an h2conn: its times (ns, on the connection's
// clock) and, once done, its status and response message.
type call struct {
	at, sent int64 // when it was due (or sent, in a closed loop) and sent
	code     codes.Code
	msg      []byte // the response message, when code is OK
	buf      []byte // the response's length-prefixed messages as received
	status   bool   // grpc-status was received
}

const (
	connWindow   = 1 << 30 // connection flow-control window opened to the server
	windowRefill = 1 << 20 // response bytes after which it is topped up
	// streamWindow is each stream's window: a stream carries one answer,
	// and it is never topped up.
	streamWindow = 1 << 30
)

var errGoAway = errors.New("the server sent GOAWAY")

// dialH2 connects to a plaintext gRPC server at addr for calls of method (a
// full method name, "/package.Service/Method") with the given deadline. done
// receives every finished call; the call is reused after done returns.
func dialH2(addr, method string, timeout time.Duration, now func() int64, done func(*h2conn, *call)) (*h2conn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &h2conn{nc: nc, bw: bufio.NewWriterSize(nc, 16<<10), done: done, timeout: timeout, now: now,
		next: 1, pending: map[uint32]*call{}, exited: make(chan struct{})}
	c.br = bufio.NewReaderSize(nc, 64<<10)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.SetReuseFrames()
	c.head = requestHeaders(addr, method, timeout)
	c.bw.WriteString(http2.ClientPreface)
	err = c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow})
	if err == nil {
		err = c.fr.WriteWindowUpdate(0, connWindow)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	go c.read()
	return c, nil
}

// requestHeaders encodes the headers of a call as never-indexed literals, so
// the block leaves the server's decoding table alone and can be sent again
// as it is.
func requestHeaders(authority, method string, timeout time.Duration) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for _, kv := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", authority},
		{"content-type", "application/grpc"}, {"te", "trailers"},
		{"grpc-timeout", strconv.FormatInt(max(timeout.Milliseconds(), 1), 10) + "m"},
	} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1], Sensitive: true})
	}
	return b.Bytes()
}

// send starts a call of the method with msg, a request message after gRPC's
// 5-byte prefix. It fails if the connection did; then no call was started
// and done will not see one. Without flush the call waits in the buffer
// until the reader has handled the frames it has read: calls sent from done
// go out together, in one write instead of one each (a write was half the
// load generator's CPU).
func (c *h2conn) send(at, sent int64, msg []byte, flush bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	id := c.next
	c.next += 2
	var cl *call
	if n := len(c.free); n > 0 {
		cl, c.free = c.free[n-1], c.free[:n-1]
	} else {
		cl = new(call)
	}
	*cl = call{at: at, sent: sent, buf: cl.buf[:0]}
	c.pending[id] = cl
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.head, EndHeaders: true})
	if err == nil {
		err = c.fr.WriteData(id, true, msg)
	}
	if err == nil && flush {
		err = c.bw.Flush()
	}
	if err != nil {
		c.broken(err) // the reader fails this call with the others
	}
	return nil
}

// broken records a write error and closes the connection, so that the
// reader fails the pending calls; c.mu is held.
func (c *h2conn) broken(err error) {
	if c.err == nil || c.err == errGoAway {
		c.err = err
	}
	c.nc.Close()
}

// close stops new calls and fails the pending ones with code; the reader
// exits. It waits for the reader to finish the calls.
func (c *h2conn) close(code codes.Code) {
	c.shut(errors.New("connection closed"), code)
	<-c.exited
}

// shut stops new calls, closes the connection and passes every pending call
// to done with code.
func (c *h2conn) shut(err error, code codes.Code) {
	c.mu.Lock()
	if c.err == nil || c.err == errGoAway {
		c.err = err
	}
	pending := c.pending
	c.pending = map[uint32]*call{}
	c.mu.Unlock()
	c.nc.Close()
	for _, cl := range pending {
		cl.code = code
		c.finished(cl)
	}
}

// read handles the server's frames until the connection fails or is closed;
// then it fails the pending calls with Unavailable.
func (c *h2conn) read() {
	defer close(c.exited)
	for {
		if c.br.Buffered() == 0 {
			c.flush()
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.shut(fmt.Errorf("reading from the server: %w", err), codes.Unavailable)
			return
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			c.headers(f)
		case *http2.DataFrame:
			c.data(f)
		case *http2.RSTStreamFrame:
			if cl := c.take(f.StreamID); cl != nil {
				cl.code = resetCode(f.ErrCode)
				c.finished(cl)
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		case *http2.GoAwayFrame:
			// Calls already sent may still be answered.
			c.mu.Lock()
			if c.err == nil {
				c.err = errGoAway
			}
			c.mu.Unlock()
		}
	}
}

// write writes one frame (from the reader); the reader flushes it.
func (c *h2conn) write(frame func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := frame(); err != nil {
		c.broken(err)
	}
}

// flush writes what is buffered, before the reader waits for more frames.
func (c *h2conn) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bw.Buffered() == 0 {
		return
	}
	if err := c.bw.Flush(); err != nil {
		c.broken(err)
	}
}

func (c *h2conn) headers(f *http2.MetaHeadersFrame) {
	cl := c.lookup(f.StreamID)
	if cl == nil {
		return
	}
	if s := f.PseudoValue("status"); s != "" && s != "200" {
		cl.code, cl.status = codes.Unknown, true
	}
	for _, hf := range f.RegularFields() {
		if hf.Name == "grpc-status" && !cl.status {
			n, err := strconv.Atoi(hf.Value)
			if err != nil {
				n = int(codes.Unknown)
			}
			cl.code, cl.status = codes.Code(n), true
		}
	}
	if f.StreamEnded() {
		c.end(f.StreamID)
	}
}

func (c *h2conn) data(f *http2.DataFrame) {
	if c.unacked += f.Length; c.unacked >= windowRefill {
		n := c.unacked
		c.unacked = 0
		c.write(func() error { return c.fr.WriteWindowUpdate(0, n) })
	}
	cl := c.lookup(f.StreamID)
	if cl == nil {
		return
	}
	cl.buf = append(cl.buf, f.Data()...)
	if f.StreamEnded() {
		c.end(f.StreamID)
	}
}

// end finishes the call of a stream the server ended: OK only with
// grpc-status 0 and one whole uncompressed message.
func (c *h2conn) end(id uint32) {
	cl := c.take(id)
	if cl == nil {
		return
	}
	switch b := cl.buf; {
	case !cl.status:
		cl.code = codes.Internal // no trailers
	case cl.code != codes.OK:
	case len(b) < 5 || b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != len(b)-5:
		cl.code = codes.Internal
	default:
		cl.msg = b[5:]
	}
	c.finished(cl)
}

// lookup returns the pending call of stream id, or nil.
func (c *h2conn) lookup(id uint32) *call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[id]
}

// take removes and returns the pending call of stream id, or nil.
func (c *h2conn) take(id uint32) *call {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.pending[id]
	delete(c.pending, id)
	return cl
}

// finished passes cl to done, failed with DeadlineExceeded if it took longer
// than the timeout, and then keeps it for reuse.
func (c *h2conn) finished(cl *call) {
	if c.now()-cl.sent > c.timeout.Nanoseconds() {
		cl.code, cl.msg = codes.DeadlineExceeded, nil
	}
	c.done(c, cl)
	c.mu.Lock()
	c.free = append(c.free, cl)
	c.mu.Unlock()
}

// resetCode is the status of a call whose stream was reset, as gRPC maps
// HTTP/2 error codes.
func resetCode(e http2.ErrCode) codes.Code {
	switch e {
	case http2.ErrCodeRefusedStream:
		return codes.Unavailable
	case http2.ErrCodeCancel:
		return codes.Canceled
	case http2.ErrCodeEnhanceYourCalm:
		return codes.ResourceExhausted
	case http2.ErrCodeInadequateSecurity:
		return codes.PermissionDenied
	}
	return codes.Internal
}
