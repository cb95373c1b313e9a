package manager

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/codes"

	smv1 "github.com/streammgr/streammgr/api/streammgr/v1"
)

// The daemon-wide memory budget: a fast peer fills it, sockets stop being
// read, new streams and writes are refused with MEMORY_BUDGET accepting
// nothing, ListStreams shows it, and reading the bytes frees it again
// (nothing was dropped).
func TestMemoryBudget(t *testing.T) {
	t.Parallel()
	const budget = 4 << 20
	e := newEnv(t, Config{MaxBufferedBytes: budget})
	resp, peer := e.openTCP(t, func(r *smv1.OpenRequest) { r.Limit = i64(1 << 20) })
	id := resp.StreamId
	other, _ := e.openTCP(t, nil)

	// Two streams at 2×limit + a chunk would pass the budget: the second
	// one's socket stops first.
	resp2, peer2 := e.openTCP(t, func(r *smv1.OpenRequest) { r.Limit = i64(1 << 20) })
	sent := bytes.Repeat([]byte("streammgr budget"), 3<<20/16)
	go func() { _, _ = peer.Write(sent) }()
	go func() { _, _ = peer2.Write(sent) }()
	waitFor(t, "the budget to fill", func() bool { return e.m.Budget().Tight() })
	list, err := e.c.ListStreams(bg(t), &smv1.ListStreamsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if list.MaxBufferedBytes != budget || list.BufferedBytes < budget*7/8 || list.BufferedBytes > budget {
		t.Fatalf("ListStreams budget %d of %d, want between 7/8 and all of it", list.BufferedBytes, list.MaxBufferedBytes)
	}

	_, err = e.c.OpenPair(bg(t), &smv1.OpenPairRequest{})
	wantStatus(t, err, codes.ResourceExhausted, ReasonMemoryBudget)
	_, err = e.c.Write(bg(t), &smv1.WriteRequest{StreamId: other.StreamId, Data: make([]byte, budget/4), Offset: i64(0)})
	wantStatus(t, err, codes.ResourceExhausted, ReasonMemoryBudget)
	if got := e.stream(t, other.StreamId).W.Written(); got != 0 {
		t.Fatalf("a refused write accepted %d bytes", got)
	}

	// Reading both streams drains the budget; every byte arrives once.
	for _, sid := range []string{id, resp2.StreamId} {
		var got []byte
		var off int64
		for len(got) < len(sent) {
			r, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: sid, N: i64(1 << 20), Offset: i64(off)})
			if err != nil {
				t.Fatal(err)
			}
			got, off = append(got, r.Data...), r.NextOffset
			if used := e.m.Budget().Used(); used > budget {
				t.Fatalf("budget used %d > %d", used, budget)
			}
		}
		if !bytes.Equal(got, sent) {
			t.Fatal("bytes lost under the budget")
		}
		// acknowledge the last read
		if _, err := e.c.Read(bg(t), &smv1.ReadRequest{StreamId: sid, N: i64(0), Offset: i64(off)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the budget to empty", func() bool { return e.m.Budget().Used() == 0 })
	if _, err := e.c.OpenPair(bg(t), &smv1.OpenPairRequest{}); err != nil {
		t.Fatalf("OpenPair after the budget emptied: %v", err)
	}
	// A released stream gives back what it held.
	peerWrite(t, peer, "held")
	e.waitBuffered(t, id, 4)
	e.m.Release(id)
	waitFor(t, "the released stream's bytes back", func() bool { return e.m.Budget().Used() == 0 })
}
