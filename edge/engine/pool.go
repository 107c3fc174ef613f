package engine

import "sync"

// rowKernel is an operator whose output splits into independent rows; w is the worker
// index, which selects the worker's scratch buffers.
type rowKernel interface {
	rows(ip *Interpreter, w, lo, hi int)
}

type job struct {
	k      rowKernel
	ip     *Interpreter
	w      int
	lo, hi int
}

// pool is an interpreter's fixed set of worker goroutines, started once. It holds no
// reference to the interpreter between jobs, so an unreachable interpreter can be
// cleaned up and its workers stopped.
type pool struct {
	jobs chan job
	wg   sync.WaitGroup
	once sync.Once
	mu   sync.Mutex
	perr any // a worker's panic, re-raised in the invoking goroutine
}

func newPool(workers int) *pool {
	p := &pool{jobs: make(chan job, workers)}
	for range workers {
		go p.work()
	}
	return p
}

func (p *pool) work() {
	for j := range p.jobs {
		p.run(j)
	}
}

func (p *pool) run(j job) {
	defer func() {
		if r := recover(); r != nil {
			p.mu.Lock()
			p.perr = r
			p.mu.Unlock()
		}
		p.wg.Done()
	}()
	j.k.rows(j.ip, j.w, j.lo, j.hi)
}

func (p *pool) close() { p.once.Do(func() { close(p.jobs) }) }

// parallel runs k over rows [0,n) split into contiguous chunks of at least minRows rows,
// one per worker. Each row is computed the same way whatever the split, so results do not
// depend on the number of threads.
func (ip *Interpreter) parallel(k rowKernel, n, minRows int) {
	nw := len(ip.scratch)
	if minRows < 1 {
		minRows = 1
	}
	if c := (n + minRows - 1) / minRows; c < nw {
		nw = c
	}
	if nw <= 1 || ip.pool == nil {
		k.rows(ip, 0, 0, n)
		return
	}
	chunk := (n + nw - 1) / nw
	nw = (n + chunk - 1) / chunk
	ip.pool.wg.Add(nw - 1)
	for w := 1; w < nw; w++ {
		lo := w * chunk
		hi := min(n, lo+chunk)
		ip.pool.jobs <- job{k: k, ip: ip, w: w, lo: lo, hi: hi}
	}
	defer ip.pool.rethrow()
	k.rows(ip, 0, 0, min(n, chunk))
}

// rethrow waits for the workers, even when the invoking goroutine's own share panicked,
// and re-raises a worker's panic there (Invoke turns it into an error). It clears the
// panic so that a later Invoke does not report it again.
func (p *pool) rethrow() {
	p.wg.Wait()
	p.mu.Lock()
	r := p.perr
	p.perr = nil
	p.mu.Unlock()
	if r != nil {
		panic(r)
	}
}
