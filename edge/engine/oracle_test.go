package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// oracleJob is one model run on one seeded input, in Go and in LiteRT.js.
type oracleJob struct {
	name   string
	model  *tflite.Model
	path   string // the .tflite file LiteRT reads
	seed   uint64
	expect expectation
}

// randomInputs fills every input of ip from seed: 8-bit values uniformly over their range,
// floats uniformly in [-1, 1). It returns the raw bytes of each input for LiteRT.
func randomInputs(ip *Interpreter, n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var raw [][]byte
	for i := range n {
		tn := ip.Input(i)
		switch tn.Info().Type {
		case tflite.Float32:
			f := tn.Float32()
			for j := range f {
				f[j] = float32(r.Float64()*2 - 1)
			}
		default:
			b := tn.Bytes()
			for j := range b {
				b[j] = byte(r.Uint32())
			}
		}
		raw = append(raw, append([]byte(nil), tn.Bytes()...))
	}
	return raw
}

// TestOracleLiteRT feeds seeded random inputs to every shared model and to every synthetic
// single-op model, in Go and in LiteRT.js in the same run, and applies the conformance
// expectations to the differences.
func TestOracleLiteRT(t *testing.T) {
	cmd := testenv.LiteRT(t)
	dir := t.TempDir()
	var jobs []oracleJob
	for _, c := range conformance {
		if c.expect == refused || c.runtime != "litert" {
			continue // refused files, and files LiteRT itself refuses
		}
		if c.file == "person_detect_int8.tflite" {
			continue // LiteRT refuses it; its _DERIVED copy is checked
		}
		path := testenv.SharedPath(t, "models", c.file)
		m, err := tflite.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		seeds := 3
		if c.heavy {
			seeds = 1
		}
		if !strings.Contains(c.file, "/") && !c.heavy {
			seeds = 4
		}
		for s := range seeds {
			jobs = append(jobs, oracleJob{name: c.file, model: m, path: path, seed: uint64(s + 1), expect: c.expect})
		}
	}
	for _, c := range synthCases() {
		m := c.build()
		b, err := tflite.Write(m)
		if err != nil {
			t.Fatalf("%s: write: %v", c.name, err)
		}
		path := filepath.Join(dir, c.name+".tflite")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for s := range 2 {
			jobs = append(jobs, oracleJob{name: "synthetic/" + c.name, model: m, path: path, seed: uint64(s + 1), expect: c.expect})
		}
	}

	// Generous: seconds normally, but CI runs it under -race and qemu on 2 loaded cores.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	// Run every job in Go and write its inputs; then LiteRT runs them all in two batch
	// processes (one per core), paying its start-up twice rather than once per job.
	goOut := make([][]*Tensor, len(jobs))
	var batch [2][]batchJob
	for i, j := range jobs {
		jd := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(jd, 0o755); err != nil {
			t.Fatal(err)
		}
		m, err := Load(j.model, Options{Threads: 1})
		if err != nil {
			t.Fatalf("%s: %v", j.name, err)
		}
		ip := m.NewInterpreter()
		raw := randomInputs(ip, len(m.Inputs()), j.seed)
		if err := ip.Invoke(ctx); err != nil {
			t.Fatalf("%s: %v", j.name, err)
		}
		bj := batchJob{Model: j.path, Out: filepath.Join(jd, "out.json")}
		for k, in := range raw {
			p := filepath.Join(jd, fmt.Sprintf("in%d.bin", k))
			if err := os.WriteFile(p, in, 0o644); err != nil {
				t.Fatal(err)
			}
			bj.Inputs = append(bj.Inputs, p)
		}
		for o := range m.Outputs() {
			goOut[i] = append(goOut[i], ip.Output(o))
		}
		batch[i%2] = append(batch[i%2], bj)
	}
	goTime := time.Since(start)
	var wg sync.WaitGroup
	errs := make([]error, len(batch))
	for b := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[b] = runBatch(ctx, cmd, filepath.Join(dir, fmt.Sprintf("jobs%d.json", b)), batch[b])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	failed := map[string]bool{}
	models := map[string]bool{}
	for i, j := range jobs {
		models[j.name] = true
		msgs, err := compareOracle(filepath.Join(dir, fmt.Sprint(i), "out.json"), goOut[i], j.expect)
		for _, m := range msgs {
			t.Logf("%s seed %d: %s", j.name, j.seed, m)
		}
		if err != nil {
			t.Errorf("%s seed %d: %v", j.name, j.seed, err)
			failed[j.name] = true
		}
	}
	t.Logf("LiteRT oracle: %d runs of %d models (Go %v, total %v); %d models disagreed", len(jobs), len(models), goTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), len(failed))
}

type batchJob struct {
	Model  string   `json:"model"`
	Inputs []string `json:"inputs"`
	Out    string   `json:"out"`
}

// runBatch runs jobs in one LiteRT.js process with testdata/litert-batch.mjs, which loads
// LiteRT from the directory of the oracle script that testenv.LiteRT found.
func runBatch(ctx context.Context, cmd []string, manifest string, jobs []batchJob) error {
	b, err := json.Marshal(jobs)
	if err != nil {
		return err
	}
	if err := os.WriteFile(manifest, b, 0o644); err != nil {
		return err
	}
	script, err := filepath.Abs(filepath.Join("testdata", "litert-batch.mjs"))
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, cmd[0], script, filepath.Dir(cmd[1]), manifest).CombinedOutput()
	if err != nil {
		return fmt.Errorf("litert-batch: %v: %s", err, out)
	}
	return nil
}

func compareOracle(outFile string, got []*Tensor, expect expectation) ([]string, error) {
	b, err := os.ReadFile(outFile)
	if err != nil {
		return nil, err
	}
	var want goldenRun
	if err := json.Unmarshal(b, &want); err != nil {
		return nil, err
	}
	if want.Error != "" {
		return nil, fmt.Errorf("LiteRT: %s", want.Error)
	}
	if len(want.Outputs) != len(got) {
		return nil, fmt.Errorf("LiteRT gave %d outputs, engine %d", len(want.Outputs), len(got))
	}
	var msgs []string
	for o, w := range want.Outputs {
		isFloat := got[o].Info().Type == tflite.Float32
		g := values(got[o])
		s := compare(g, w.Data, isFloat)
		if expect == hybrid {
			s = compareHybrid(g, w.Data)
		}
		msgs = append(msgs, fmt.Sprintf("output %d: %d of %d differ, max %g, top %d/%d", o, s.differ, s.n, s.maxDiff, s.argGot, s.argWant))
		if err := expect.check(s, isFloat); err != nil {
			return msgs, fmt.Errorf("output %d: %w", o, err)
		}
	}
	return msgs, nil
}

// compareHybrid counts values beyond 2% of the output's range: TFLite's hybrid kernels
// quantize activations to int8 per batch, the engine keeps them in float.
func compareHybrid(got, want []float64) diffStats {
	s := compare(got, want, true)
	rng := 0.0
	for _, v := range want {
		rng = max(rng, math.Abs(v))
	}
	s.differ = 0
	for i := range want {
		if math.Abs(got[i]-want[i]) > 0.02*rng+1e-6 {
			s.differ++
		}
	}
	return s
}
