package streamcore

import "testing"

func TestAfterLost(t *testing.T) {
	t.Parallel()
	e := openTCP(t, &Options{})
	ran := make(chan struct{}, 3)
	e.w.AfterLost(func() { ran <- struct{}{} })
	stop := e.w.AfterLost(func() { t.Error("a stopped callback ran") })
	if !stop() || stop() {
		t.Fatal("stop: want true, then false")
	}
	select {
	case <-ran:
		t.Fatal("ran while the connection is alive")
	default:
	}
	e.w.Abort()
	<-ran
	e.w.AfterLost(func() { ran <- struct{}{} }) // already lost: at once
	<-ran
}
