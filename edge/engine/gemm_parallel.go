package engine

// Splitting kernels over cores. Integer sums are exact, and every output element is computed
// by exactly one worker with the same kernel, so results are bit-identical whatever the
// number of workers.

// rangeTask is work over an index range [0,n) whose sub-ranges are independent.
type rangeTask interface {
	runRange(lo, hi int)
}

// workers runs rangeTasks on a fixed set of goroutines, so a kernel call uses several cores
// without allocating. An interpreter owns one (calls must not overlap) and closes it when
// done with it.
type workers struct {
	n     int // participants, the calling goroutine included
	jobs  chan workerJob
	done  chan struct{}
	gemmT gemmTask // reused by gemm so that a call allocates nothing
}

type workerJob struct {
	t      rangeTask
	lo, hi int
}

// minParallelMACs is the smallest GEMM worth splitting: below it, waking another goroutine
// (a few µs) costs more than it saves.
const minParallelMACs = 1 << 17

// newWorkers starts threads-1 goroutines (none for threads <= 1).
func newWorkers(threads int) *workers {
	w := &workers{n: max(1, threads)}
	if w.n > 1 {
		w.jobs = make(chan workerJob, w.n)
		w.done = make(chan struct{}, w.n)
		for range w.n - 1 {
			go w.loop(w.jobs, w.done)
		}
	}
	return w
}

func (w *workers) loop(jobs <-chan workerJob, done chan<- struct{}) {
	for j := range jobs {
		j.t.runRange(j.lo, j.hi)
		done <- struct{}{}
	}
}

// close stops the goroutines; w then runs everything on the caller's goroutine.
func (w *workers) close() {
	if w.jobs != nil {
		close(w.jobs)
		w.jobs = nil
	}
	w.n = 1
}

// run calls t.runRange over [0,n) split into at most w.n ranges whose bounds are multiples
// of grain, one of them on the calling goroutine, and returns when all are done.
func (w *workers) run(t rangeTask, n, grain int) {
	grain = max(1, grain)
	units := (n + grain - 1) / grain
	parts := min(w.n, units)
	if parts <= 1 || w.jobs == nil {
		t.runRange(0, n)
		return
	}
	chunk := (units + parts - 1) / parts * grain
	sent := 0
	for lo := chunk; lo < n; lo += chunk {
		w.jobs <- workerJob{t: t, lo: lo, hi: min(n, lo+chunk)}
		sent++
	}
	t.runRange(0, min(n, chunk))
	for range sent {
		<-w.done
	}
}

// gemmTask is one gemm split by rows (byPanels false) or by panels of 8 output channels.
type gemmTask struct {
	p        *packedInt8
	dst      []int32
	a        []int8
	m        int
	byPanels bool
}

func (t *gemmTask) runRange(lo, hi int) {
	if t.byPanels {
		t.p.gemmBlock(t.dst, t.a, t.m, 0, t.m, lo, hi)
	} else {
		t.p.gemmBlock(t.dst, t.a, t.m, lo, hi, 0, t.p.npanels)
	}
}

// gemm is p.gemm(dst, a, m) split over the workers: by rows when there are enough of them
// (each worker then reads all weights but only its rows), else by output channels (FULLY_
// CONNECTED, the last 7×7 layers).
func (w *workers) gemm(p *packedInt8, dst []int32, a []int8, m int) {
	if w.n <= 1 || m*p.n*p.k < minParallelMACs {
		p.gemm(dst, a, m)
		return
	}
	t := &w.gemmT
	*t = gemmTask{p: p, dst: dst, a: a, m: m}
	if m >= 16*w.n {
		w.run(t, m, 8)
	} else {
		t.byPanels = true
		w.run(t, p.npanels, 1)
	}
	*t = gemmTask{} // keep no references to the caller's buffers
}
