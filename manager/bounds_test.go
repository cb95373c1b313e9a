package manager

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// Every request bound answers INVALID_ARGUMENT naming its field, and a
// request just inside it works.
func TestRequestBounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a, b := e.openPair(t, nil)
	seps := func(n, size int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = bytes.Repeat([]byte{byte('a' + i%26)}, size)
		}
		return out
	}
	long := strings.Repeat("x", MaxIDLength+1)
	for _, tc := range []struct {
		name, field string
		call        func() error
	}{
		{"too many separators", "separators", func() error {
			_, err := e.c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: b, Separators: seps(MaxSeparators+1, 1)})
			return err
		}},
		{"separators too large together", "separators", func() error {
			_, err := e.c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: b, Separators: seps(2, MaxSeparatorBytes/2+1)})
			return err
		}},
		{"one separator too large", "separator", func() error {
			_, err := e.c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: b, Separator: bytes.Repeat([]byte("|"), MaxSeparatorBytes+1)})
			return err
		}},
		{"too many lines", "lines", func() error {
			_, err := e.c.WriteLines(bg(t), &smv1.WriteLinesRequest{StreamId: a, Lines: make([][]byte, MaxLines+1)})
			return err
		}},
		{"stream id too long", "stream_id", func() error {
			_, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: long})
			return err
		}},
		{"server id too long", "server_id", func() error {
			_, err := e.c.Accept(bg(t), &smv1.AcceptRequest{ServerId: long})
			return err
		}},
		{"close server id too long", "server_id", func() error {
			_, err := e.c.CloseServer(bg(t), &smv1.CloseServerRequest{ServerId: long})
			return err
		}},
		{"host too long", "tcp.host", func() error {
			_, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: strings.Repeat("h", MaxHostLength+1), Port: 1}}})
			return err
		}},
		{"NUL in a host", "tcp.host", func() error {
			_, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Tcp{Tcp: &smv1.TcpAddress{Host: "127.0.0.1\x00.evil", Port: 1}}})
			return err
		}},
		{"NUL in a Unix path", "unix.path", func() error {
			_, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: "/tmp/a\x00b"}}})
			return err
		}},
		{"Unix path too long", "unix.path", func() error {
			_, err := e.c.Open(bg(t), &smv1.OpenRequest{Address: &smv1.OpenRequest_Unix{Unix: &smv1.UnixAddress{Path: "/" + strings.Repeat("p", MaxUnixPath)}}})
			return err
		}},
		{"server Unix path too long", "unix.path", func() error {
			_, err := e.c.StartServer(bg(t), &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Unix{Unix: &smv1.UnixAddress{Path: "/" + strings.Repeat("p", MaxUnixPath)}}})
			return err
		}},
		{"NUL in a server Unix path", "unix.path", func() error {
			_, err := e.c.StartServer(bg(t), &smv1.StartServerRequest{Address: &smv1.StartServerRequest_Unix{Unix: &smv1.UnixAddress{Path: "/tmp/s\x00"}}})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantField(t, wantStatus(t, tc.call(), codes.InvalidArgument, ReasonInvalidArgument), tc.field)
		})
	}

	// Just inside the bounds.
	e.write(t, a, "xyz|")
	r, err := e.c.ReadUntil(bg(t), &smv1.ReadUntilRequest{StreamId: b, Separators: append(seps(MaxSeparators-1, MaxSeparatorBytes/MaxSeparators), []byte("|"))})
	if err != nil || string(r.Data) != "xyz|" {
		t.Fatalf("ReadUntil with %d separators = %v, %v", MaxSeparators, r, err)
	}
	lines := make([][]byte, MaxLines)
	lines[MaxLines-1] = []byte("last")
	if _, err := e.c.WriteLines(bg(t), &smv1.WriteLinesRequest{StreamId: a, Lines: lines}); err != nil {
		t.Fatalf("WriteLines with %d lines: %v", MaxLines, err)
	}
	if got := e.readExactly(t, b, 4); string(got.Data) != "last" {
		t.Fatalf("read %q", got.Data)
	}
}

// Read with any negative n reads to EOF, as asyncio's read(-5) does.
func TestReadNegativeReadsToEOF(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a, b := e.openPair(t, nil)
	e.write(t, a, "all of it")
	e.closeStream(t, a)
	if r := e.read(t, b, i64(-5)); string(r.Data) != "all of it" || !r.Eof {
		t.Fatalf("Read(-5) = %q eof=%v, want every byte and EOF", r.Data, r.Eof)
	}
}
