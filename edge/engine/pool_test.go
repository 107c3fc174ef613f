package engine

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// panicRows panics in the invoking goroutine's share (worker 0) and in worker 2's while
// armed.
type panicRows struct{ armed atomic.Bool }

func (k *panicRows) rows(_ *Interpreter, w, _, _ int) {
	if k.armed.Load() && (w == 0 || w == 2) {
		panic(fmt.Sprintf("boom %d", w))
	}
}

// TestWorkerPanicReportedOnce: a panic in an operator's rows reaches the invoking goroutine
// (Invoke turns it into an error) after every worker has finished, and a worker's panic is
// not raised again by the next parallel operator.
func TestWorkerPanicReportedOnce(t *testing.T) {
	m, err := Load(unaryModel(tflite.OpRelu, 1, nil, tflite.Float32, []int32{1, 8}, nil, nil), Options{Threads: 3})
	if err != nil {
		t.Fatal(err)
	}
	ip := m.NewInterpreter()
	defer ip.Close()
	k := &panicRows{}
	k.armed.Store(true)
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Error("the panic of the rows did not reach the caller")
			}
		}()
		ip.parallel(k, 30, 1)
	}()
	k.armed.Store(false)
	ip.parallel(k, 30, 1)
}

func TestInvokeAfterClose(t *testing.T) {
	for _, threads := range []int{1, 4} {
		m, err := loadShared(t, "kws_dscnn_int8.tflite", Options{Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		ip := m.NewInterpreter()
		ip.Close()
		ip.Close() // a second Close is harmless
		if err := ip.Invoke(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("Threads=%d: Invoke after Close: %v", threads, err)
		}
	}
}

// TestWorkersStop: an interpreter's workers end on Close, and also when the interpreter is
// dropped without Close (edge/device keeps interpreters in a sync.Pool, which drops them).
func TestWorkersStop(t *testing.T) {
	m, err := loadShared(t, "kws_dscnn_int8.tflite", Options{Threads: 4})
	if err != nil {
		t.Fatal(err)
	}
	waitGoroutines := func(what string, want int) {
		t.Helper()
		// Generous: cleanups run on their own goroutine after a GC cycle, late on a loaded
		// machine. A leak never gets there.
		deadline := time.Now().Add(30 * time.Second)
		for runtime.NumGoroutine() > want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d goroutines, want at most %d", what, runtime.NumGoroutine(), want)
			}
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	base := runtime.NumGoroutine()
	ip := m.NewInterpreter()
	if ip.pool == nil {
		t.Fatal("Threads=4 started no workers")
	}
	if err := ip.Invoke(context.Background()); err != nil {
		t.Fatal(err)
	}
	ip.Close()
	waitGoroutines("after Close", base)

	for range 3 {
		ip := m.NewInterpreter()
		if err := ip.Invoke(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	waitGoroutines("after dropping 3 interpreters", base)
}
