package main_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// jsonStream decodes the sequence of JSON objects grpcurl prints for a
// streaming call.
func jsonStream(t *testing.T, out string) []map[string]any {
	t.Helper()
	var msgs []map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var v map[string]any
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			return msgs
		} else if err != nil {
			t.Fatalf("decoding grpcurl's output: %v\n%s", err, out)
		}
		msgs = append(msgs, v)
	}
}

// testStreaming drives Session, Attach and Relay once each through
// grpcurl, one request per call: the scenarios that make TestE2E call
// every RPC.
func testStreaming(t *testing.T, d *daemon) {
	tg := d.unix()
	p := newPeer(t)
	o := openTCP(t, tg, p.port(), nil)
	c := p.accept(t)
	defer c.Close()

	// Session: a write, then a read of the echoed bytes.
	r := tg.exec(context.Background(), "Session", m{"callId": 7, "write": m{"streamId": o.StreamID, "data": base64.StdEncoding.EncodeToString([]byte("ping"))}})
	if r.code != 0 {
		t.Fatalf("Session write: %s", r)
	}
	if msgs := jsonStream(t, r.stdout); len(msgs) != 1 || msgs[0]["callId"] != "7" || msgs[0]["write"].(map[string]any)["nextOffset"] != "4" {
		t.Fatalf("Session write answered %v", msgs)
	}
	readPeer(t, c, "ping")
	writePeer(t, c, "pong")
	r = tg.exec(context.Background(), "Session", m{"callId": 8, "readExactly": m{"streamId": o.StreamID, "n": 4}})
	if msgs := jsonStream(t, r.stdout); r.code != 0 || len(msgs) != 1 || msgs[0]["readExactly"].(map[string]any)["data"] != base64.StdEncoding.EncodeToString([]byte("pong")) {
		t.Fatalf("Session read_exactly: %s", r)
	}

	// Attach: the peer's bytes and FIN come back, then the call ends.
	writePeer(t, c, "bulk")
	_ = c.(*net.TCPConn).CloseWrite()
	r = tg.exec(context.Background(), "Attach", m{"streamId": o.StreamID})
	if r.code != 0 {
		t.Fatalf("Attach: %s", r)
	}
	var got string
	eof := false
	for _, msg := range jsonStream(t, r.stdout) {
		if s, ok := msg["data"].(string); ok {
			b, _ := base64.StdEncoding.DecodeString(s)
			got += string(b)
		}
		eof = eof || msg["eof"] == true
	}
	if got != "bulk" || !eof {
		t.Fatalf("Attach delivered %q eof %v:\n%s", got, eof, r.stdout)
	}

	// Relay: two streams, a FIN from each side, the counts.
	a := openTCP(t, tg, p.port(), nil)
	ca := p.accept(t)
	defer ca.Close()
	b := openTCP(t, tg, p.port(), nil)
	cb := p.accept(t)
	defer cb.Close()
	writePeer(t, ca, "to b")
	_ = ca.(*net.TCPConn).CloseWrite()
	writePeer(t, cb, "to a!")
	_ = cb.(*net.TCPConn).CloseWrite()
	res := call[struct {
		FirstToSecond string `json:"firstToSecond"`
		SecondToFirst string `json:"secondToFirst"`
	}](t, tg, "Relay", m{"firstStreamId": a.StreamID, "secondStreamId": b.StreamID})
	if res.FirstToSecond != "4" || res.SecondToFirst != "5" {
		t.Fatalf("Relay counts %+v, want 4 and 5", res)
	}
	readPeer(t, cb, "to b")
	readPeer(t, ca, "to a!")
}
