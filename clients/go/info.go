package streammgr

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// StreamInfo describes one stream the daemon owns (ListStreams).
type StreamInfo struct {
	// ID is the stream's handle ("s-...").
	ID string
	// Kind is "tcp", "unix", "tls" or "pair".
	Kind string
	// Peer is the remote address ("host:port" or a Unix path).
	Peer string
	// Local is the local address ("" for an unnamed Unix client socket).
	Local string
	// State is "queued", "open", "eof", "closing" or "closed".
	State string
	// BytesIn counts the inbound bytes delivered (the inbound offset).
	BytesIn int64
	// BytesOut counts the outbound bytes accepted (the outbound offset).
	BytesOut int64
	// Buffered counts the bytes received and not yet delivered.
	Buffered int64
	// Retained counts the bytes delivered and kept until acknowledged.
	Retained int64
	// EarliestOffset is the earliest inbound offset a read may resume from.
	EarliestOffset int64
	// WriteBuffered counts the bytes accepted and not yet sent.
	WriteBuffered int64
	// CallsInProgress counts the calls on the stream right now.
	CallsInProgress int64
	// Age is the time since the stream was opened or accepted.
	Age time.Duration
	// ServerID is the server that accepted the stream, if any.
	ServerID string
	// Attached is true while an Attach call (a *Conn) owns the stream's
	// inbound bytes.
	Attached bool
	// RelayPeer is the other stream of a running Relay, if any.
	RelayPeer string
	// Owner is the identity that owns the stream.
	Owner string
	// SharedWith lists the other identities that may use it.
	SharedWith []string
}

// ServerInfo describes one listening server (ListServers).
type ServerInfo struct {
	// ID is the server's handle ("srv-...").
	ID string
	// Sockets lists the bound addresses.
	Sockets []string
	// State is "serving", "bound" or "closed".
	State string
	// Accepted counts the connections accepted so far.
	Accepted int64
	// Queued counts the connections waiting to be claimed.
	Queued int64
	// Rejected counts the connections closed at once (queue full, limits).
	Rejected int64
	// ServeCalls counts the Serve calls (Listeners) attached right now.
	ServeCalls int64
	// BytesIn counts the bytes read from the server's streams.
	BytesIn int64
	// BytesOut counts the bytes written to the server's streams.
	BytesOut int64
	// Age is the time since the server started.
	Age time.Duration
	// Owner is the identity that owns the server.
	Owner string
	// SharedWith lists the other identities that may use it.
	SharedWith []string
}

// IsServerID reports whether id names a server ("srv-...") rather than a
// stream ("s-...").
func IsServerID(id string) bool { return strings.HasPrefix(id, "srv-") }

func streamInfo(s *smv1.StreamInfo) StreamInfo {
	return StreamInfo{
		ID: s.GetStreamId(), Kind: s.GetKind(), Peer: s.GetPeername(), Local: s.GetSockname(),
		State: s.GetState(), BytesIn: s.GetBytesIn(), BytesOut: s.GetBytesOut(),
		Buffered: s.GetBuffered(), Retained: s.GetRetained(), EarliestOffset: s.GetEarliestOffset(),
		WriteBuffered: s.GetWriteBuffered(), CallsInProgress: s.GetCallsInProgress(),
		Age: s.GetAge().AsDuration(), ServerID: s.GetServerId(), Attached: s.GetAttached(),
		RelayPeer: s.GetRelayPeer(), Owner: s.GetOwner(), SharedWith: s.GetSharedWith(),
	}
}

func serverInfo(s *smv1.ServerInfo) ServerInfo {
	return ServerInfo{
		ID: s.GetServerId(), Sockets: s.GetSockets(), State: s.GetState(),
		Accepted: s.GetAccepted(), Queued: s.GetQueued(), Rejected: s.GetRejected(),
		ServeCalls: s.GetServeCalls(), BytesIn: s.GetBytesIn(), BytesOut: s.GetBytesOut(),
		Age: s.GetAge().AsDuration(), Owner: s.GetOwner(), SharedWith: s.GetSharedWith(),
	}
}

// Streams lists the streams the caller may use (an admin: all of them).
func (c *Client) Streams(ctx context.Context) ([]StreamInfo, error) {
	r, err := c.api.ListStreams(ctx, &smv1.ListStreamsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list streams: %w", fromStatus(err))
	}
	out := make([]StreamInfo, 0, len(r.GetStreams()))
	for _, s := range r.GetStreams() {
		out = append(out, streamInfo(s))
	}
	return out, nil
}

// Servers lists the servers the caller may use (an admin: all of them).
func (c *Client) Servers(ctx context.Context) ([]ServerInfo, error) {
	r, err := c.api.ListServers(ctx, &smv1.ListServersRequest{})
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", fromStatus(err))
	}
	out := make([]ServerInfo, 0, len(r.GetServers()))
	for _, s := range r.GetServers() {
		out = append(out, serverInfo(s))
	}
	return out, nil
}

// notFound is the error of an id the lists do not show, as the daemon
// would answer it.
func notFound(reason Reason, what, id string) error {
	return &Error{Code: codes.NotFound, Reason: reason, Message: what + " " + id + " not found"}
}

// Stream describes one stream; an id the caller may not use (or that does
// not exist) is an error matching ErrStreamNotFound.
func (c *Client) Stream(ctx context.Context, id string) (StreamInfo, error) {
	all, err := c.Streams(ctx)
	if err != nil {
		return StreamInfo{}, err
	}
	for _, s := range all {
		if s.ID == id {
			return s, nil
		}
	}
	return StreamInfo{}, fmt.Errorf("inspect %s: %w", id, notFound(ErrStreamNotFound, "stream", id))
}

// Server describes one server; an unknown id is an error matching
// ErrServerNotFound.
func (c *Client) Server(ctx context.Context, id string) (ServerInfo, error) {
	all, err := c.Servers(ctx)
	if err != nil {
		return ServerInfo{}, err
	}
	for _, s := range all {
		if s.ID == id {
			return s, nil
		}
	}
	return ServerInfo{}, fmt.Errorf("inspect %s: %w", id, notFound(ErrServerNotFound, "server", id))
}

// CloseStream closes a stream as StreamWriter.close() does: the daemon
// stops reading it, sends what is still buffered, then closes the socket.
func (c *Client) CloseStream(ctx context.Context, id string) error {
	if _, err := c.api.Close(ctx, &smv1.CloseRequest{StreamId: id}); err != nil {
		return fmt.Errorf("close %s: %w", id, fromStatus(err))
	}
	return nil
}

// AbortStream closes a stream at once, discarding what was not sent.
func (c *Client) AbortStream(ctx context.Context, id string) error {
	if _, err := c.api.Abort(ctx, &smv1.AbortRequest{StreamId: id}); err != nil {
		return fmt.Errorf("abort %s: %w", id, fromStatus(err))
	}
	return nil
}

// ServerClients says what CloseServer does with the streams a server
// accepted.
type ServerClients int

const (
	// KeepClients leaves them open (asyncio's Server.close()).
	KeepClients ServerClients = iota
	// CloseClients closes them (close_clients(): flush, then FIN).
	CloseClients
	// AbortClients aborts them (abort_clients()).
	AbortClients
)

// CloseServer stops a server listening and releases its handle; clients
// says what becomes of the streams it accepted.
func (c *Client) CloseServer(ctx context.Context, id string, clients ServerClients) error {
	req := &smv1.CloseServerRequest{ServerId: id, CloseClients: clients == CloseClients, AbortClients: clients == AbortClients}
	if _, err := c.api.CloseServer(ctx, req); err != nil {
		return fmt.Errorf("close %s: %w", id, fromStatus(err))
	}
	return nil
}

// RelayResult counts the bytes a relay moved.
type RelayResult struct {
	// AToB counts the bytes read from the first stream and written to the
	// second.
	AToB int64
	// BToA counts the bytes read from the second stream and written to the
	// first.
	BToA int64
}

// Relay joins two streams inside the daemon, both ways, until both
// directions reached EOF (a FIN on one becomes a half-close of the other),
// one of them failed, or one was closed (then the counts so far). The relay
// runs in the daemon on its own: a cancelled ctx only stops waiting for it.
// Neither stream may be attached (a *Conn).
func (c *Client) Relay(ctx context.Context, a, b string) (RelayResult, error) {
	r, err := c.api.Relay(ctx, &smv1.RelayRequest{FirstStreamId: a, SecondStreamId: b})
	if err != nil {
		return RelayResult{}, fmt.Errorf("relay %s %s: %w", a, b, fromStatus(err))
	}
	return RelayResult{AToB: r.GetFirstToSecond(), BToA: r.GetSecondToFirst()}, nil
}
