package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recserve/recserve/auth"
	"github.com/recserve/recserve/ratelimit"
	"github.com/recserve/recserve/tlsreload"
)

// Security configures transport security, authentication and limits. TLS is
// required unless Plaintext is set explicitly (the demo does).
type Security struct {
	Plaintext bool
	// CertFile and KeyFile are the server's certificate, used by gRPC and REST and
	// reloaded from disk when they change.
	CertFile, KeyFile string
	// ClientCAFile verifies client certificates; RequireClientCert makes them
	// mandatory (mTLS).
	ClientCAFile      string
	RequireClientCert bool
	// CAFile is what the gateway trusts for the server's certificate (default
	// ClientCAFile, else the system roots); ServerName overrides the name it
	// verifies (default localhost). GatewayCertFile/KeyFile are the gateway's
	// client certificate under mTLS.
	CAFile, ServerName              string
	GatewayCertFile, GatewayKeyFile string
	// Auth, when set, requires credentials on every RPC but health checks.
	Auth *auth.Config
	// RateLimit, when set, limits requests per principal.
	RateLimit *ratelimit.Config
	// MaxInFlight sheds requests beyond this many in flight (default 1000).
	MaxInFlight int
}

var errNoTLS = errors.New("TLS is required: set the server certificate and key, or choose plaintext explicitly")

// secured is what Security builds: server options and the gateway's credentials.
type secured struct {
	grpcOpts  []grpc.ServerOption
	serverTLS *tls.Config // nil for plaintext
	gateway   credentials.TransportCredentials
	dialHost  string
}

func (s Security) build(log *slog.Logger) (*secured, error) {
	if s.MaxInFlight <= 0 {
		s.MaxInFlight = 1000
	}
	out := &secured{dialHost: "127.0.0.1"}
	inflight, err := ratelimit.NewInFlight(s.MaxInFlight)
	if err != nil {
		return nil, err
	}
	unary := []grpc.UnaryServerInterceptor{inflight.UnaryInterceptor()}
	stream := []grpc.StreamServerInterceptor{inflight.StreamInterceptor()}
	if s.Auth != nil {
		cfg := *s.Auth
		if cfg.Logger == nil {
			cfg.Logger = log
		}
		a, err := auth.New(cfg)
		if err != nil {
			return nil, err
		}
		unary, stream = append(unary, a.UnaryInterceptor()), append(stream, a.StreamInterceptor())
	} else {
		log.Warn("authentication is off: every caller may call every RPC")
	}
	if s.RateLimit != nil {
		l, err := ratelimit.New(*s.RateLimit)
		if err != nil {
			return nil, err
		}
		unary, stream = append(unary, l.UnaryInterceptor()), append(stream, l.StreamInterceptor())
	}
	out.grpcOpts = append(out.grpcOpts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))

	switch {
	case s.Plaintext && s.CertFile != "":
		return nil, errors.New("plaintext and a TLS certificate are both configured; choose one")
	case s.Plaintext:
		out.gateway = insecure.NewCredentials()
		return out, nil
	case s.CertFile == "" || s.KeyFile == "":
		return nil, errNoTLS
	}
	r, err := tlsreload.New(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if out.serverTLS, err = tlsreload.ServerConfig(r, s.ClientCAFile, s.RequireClientCert); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	out.grpcOpts = append(out.grpcOpts, grpc.Creds(credentials.NewTLS(out.serverTLS)))
	ca := s.CAFile
	if ca == "" {
		ca = s.ClientCAFile
	}
	name := s.ServerName
	if name == "" {
		name, out.dialHost = "localhost", "localhost"
	}
	gw, err := tlsreload.ClientConfig(ca, s.GatewayCertFile, s.GatewayKeyFile, name)
	if err != nil {
		return nil, fmt.Errorf("tls: gateway client: %w", err)
	}
	out.gateway = credentials.NewTLS(gw)
	return out, nil
}

// gatewayTarget is the address the gateway dials for a gRPC listener.
func (s *secured) gatewayTarget(lis net.Listener) string {
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	return net.JoinHostPort(s.dialHost, port)
}
