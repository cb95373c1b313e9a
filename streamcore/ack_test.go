package streamcore

import "testing"

// ReadOp.Ack: pipelined reads, each starting where the one before will
// end, acknowledge only what the caller has received, so a caller that
// lost every answer replays them all; an ack inside a kept result splits
// it; a later read without Ack acknowledges everything before it.
func TestRunAck(t *testing.T) {
	t.Parallel()
	e := replayEnv(t, 64)
	e.sendSync("0123456789abcdef")
	ack := func(v int64) ReadOp { op := readN(4); op.Ack = &v; return op }
	for i, want := range []string{"0123", "4567", "89ab"} {
		if data, next := run(t, e.r, int64(4*i), ack(0)); string(data) != want || next != int64(4*i+4) {
			t.Fatalf("read %d = %q next %d, want %q next %d", i, data, next, want, 4*i+4)
		}
	}
	if got := e.r.EarliestOffset(); got != 0 {
		t.Fatalf("earliest offset %d, want 0: nothing was acknowledged", got)
	}
	// Every answer was lost; the caller received up to 6 of them (a
	// shorter read of its own) and resumes there, acknowledging 6.
	if data, next := run(t, e.r, 6, ack(6)); string(data) != "6789" || next != 10 {
		t.Fatalf("resume at 6 = %q next %d, want \"6789\" next 10", data, next)
	}
	if got, kept := e.r.EarliestOffset(), e.r.Retained(); got != 6 || kept != 4 {
		t.Fatalf("earliest %d retained %d, want 6 and 4", got, kept)
	}
	// An ack before what is kept changes nothing; one past from is capped
	// at from.
	if data, _ := run(t, e.r, 6, ack(2)); string(data) != "6789" {
		t.Fatalf("replay at 6 = %q, want \"6789\"", data)
	}
	if data, next := run(t, e.r, 10, ack(99)); string(data) != "abcd" || next != 14 {
		t.Fatalf("read at 10 = %q next %d, want \"abcd\" next 14", data, next)
	}
	if got := e.r.EarliestOffset(); got != 10 {
		t.Fatalf("earliest %d, want 10", got)
	}
	if data, _ := run(t, e.r, 14, readN(4)); string(data) != "ef" {
		t.Fatalf("read at 14 = %q, want \"ef\"", data)
	}
	if got := e.r.EarliestOffset(); got != 14 {
		t.Fatalf("earliest %d after a read without ack, want 14", got)
	}
}
