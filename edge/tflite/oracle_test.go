package tflite

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// The oracle tests run files this package wrote in real TFLite runtimes: each rewritten
// shared model must give bit-identical outputs to its original, and every generated model
// must load and run.

// refusedOriginals names originals a runtime refuses whose rewrite it accepts, because Write
// fixes what it refused; the rewrite must then match the named sibling's output.
var refusedOriginals = map[string]string{
	// Bias quantized_dimension 3 is read as 0 and written as 0.
	"person_detect_int8.tflite": "person_detect_int8_qdim0_DERIVED.tflite",
	// Write always fills deprecated_builtin_code, the only field Arm NN 20.08 reads.
	"maxpool_int8_opcode_builtin_only.tflite": "maxpool_int8_opcode_deprecated_only.tflite",
}

type oracleRun struct {
	outputs json.RawMessage // the "outputs" member of the runner's JSON, as printed
	err     error
}

// runBatch runs models through a batch runner (testdata/oracle/*-batch.*), split over
// workers processes; cmd is the command prefix to which model paths are appended.
func runBatch(ctx context.Context, t *testing.T, cmd []string, models []string, workers int) map[string]oracleRun {
	results := make(map[string]oracleRun, len(models))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		var part []string
		for i := w; i < len(models); i += workers {
			part = append(part, models[i])
		}
		wg.Go(func() {
			c := exec.CommandContext(ctx, cmd[0], append(cmd[1:], part...)...)
			var stderr bytes.Buffer
			c.Stderr = &stderr
			out, err := c.Output()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("%s: %v: %s", strings.Join(cmd, " "), err, stderr.String())
				return
			}
			for line := range bytes.Lines(out) {
				var doc struct {
					Model   string          `json:"model"`
					Outputs json.RawMessage `json:"outputs"`
					Error   string          `json:"error"`
				}
				if err := json.Unmarshal(line, &doc); err != nil {
					t.Errorf("runner printed %q: %v", line, err)
					continue
				}
				r := oracleRun{outputs: compactJSON(doc.Outputs)}
				if doc.Error != "" {
					r.err = errors.New(doc.Error)
				}
				results[doc.Model] = r
			}
		})
	}
	wg.Wait()
	for _, m := range models {
		if _, ok := results[m]; !ok {
			t.Fatalf("no result for %s", m)
		}
	}
	return results
}

// runOne runs one model with the official one-model runner (litert-run.mjs or
// armnn-run.py), to check that the batch runner agrees with it.
func runOne(ctx context.Context, cmd []string, model, dir string) oracleRun {
	out := filepath.Join(dir, filepath.Base(model)+".json")
	c := exec.CommandContext(ctx, cmd[0], append(cmd[1:], "--model", model, "--out", out)...)
	if msg, err := c.CombinedOutput(); err != nil {
		return oracleRun{err: fmt.Errorf("%v: %s", err, msg)}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return oracleRun{err: err}
	}
	var doc struct {
		Outputs json.RawMessage `json:"outputs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return oracleRun{err: err}
	}
	return oracleRun{outputs: compactJSON(doc.Outputs)}
}

// compactJSON removes the spaces Python's json module prints, so both runners' outputs
// compare as text (and numbers keep their printed form: no float64 round trip).
func compactJSON(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

// oracleFiles writes the rewritten shared models and the generated models into dir.
func oracleFiles(t *testing.T, dir string, skip func(name string) bool) (originals, rewrites map[string]string, generated []string) {
	originals, rewrites = map[string]string{}, map[string]string{}
	for _, path := range sharedModels(t) {
		name := filepath.Base(path)
		if skip(name) {
			continue
		}
		m, _ := mustRead(t, path)
		data, err := Write(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out := filepath.Join(dir, "rewritten_"+name)
		if err := os.WriteFile(out, data, 0o644); err != nil {
			t.Fatal(err)
		}
		originals[name], rewrites[name] = path, out
	}
	ms := testModels()
	for _, name := range sortedNames(ms) {
		data, err := Write(ms[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out := filepath.Join(dir, "generated_"+name+".tflite")
		if err := os.WriteFile(out, data, 0o644); err != nil {
			t.Fatal(err)
		}
		generated = append(generated, out)
	}
	return originals, rewrites, generated
}

func checkOracle(t *testing.T, runtime string, batch, single []string, skip func(string) bool) {
	dir := t.TempDir()
	originals, rewrites, generated := oracleFiles(t, dir, skip)
	var all []string
	for _, name := range sortedKeys(originals) {
		all = append(all, originals[name], rewrites[name])
	}
	all = append(all, generated...)
	// Minutes on a loaded 2-core machine at worst; the limit only keeps a hung runtime from
	// holding CI until the go test timeout.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	res := runBatch(ctx, t, batch, all, 2)

	// The batch runner must agree with the official one-model runner.
	probe := rewrites["vww_96_int8.tflite"]
	if one := runOne(ctx, single, probe, dir); one.err != nil || !bytes.Equal(one.outputs, res[probe].outputs) {
		t.Errorf("%s: one-model runner gives %.200s (%v), batch runner %.200s", runtime, one.outputs, one.err, res[probe].outputs)
	}

	same := 0
	for _, name := range sortedKeys(originals) {
		o, r := res[originals[name]], res[rewrites[name]]
		switch {
		case o.err == nil && r.err == nil:
			if !bytes.Equal(o.outputs, r.outputs) {
				t.Errorf("%s %s: rewritten file gives different outputs:\n original  %.300s\n rewritten %.300s", runtime, name, o.outputs, r.outputs)
			} else {
				same++
			}
		case o.err == nil:
			t.Errorf("%s %s: refuses the rewritten file but runs the original: %v", runtime, name, r.err)
		case r.err == nil:
			sibling, ok := refusedOriginals[name]
			if !ok {
				t.Errorf("%s %s: original refused (%v), rewrite accepted, and no sibling to compare with", runtime, name, o.err)
				continue
			}
			s := res[originals[sibling]]
			if s.err != nil || !bytes.Equal(s.outputs, r.outputs) {
				t.Errorf("%s %s: rewrite differs from %s: %.200s vs %.200s (%v)", runtime, name, sibling, r.outputs, s.outputs, s.err)
			} else {
				t.Logf("%s %s: original refused (%.150v); the rewrite runs and equals %s", runtime, name, o.err, sibling)
			}
		default:
			t.Logf("%s %s: refuses original and rewrite alike (%.150v)", runtime, name, o.err)
		}
	}
	for _, g := range generated {
		if r := res[g]; r.err != nil {
			t.Errorf("%s refuses generated %s: %v", runtime, filepath.Base(g), r.err)
		}
	}
	t.Logf("%s: %d rewritten models bit-identical to their originals; %d generated models run", runtime, same, len(generated))
	if same < len(originals)-4 {
		t.Errorf("only %d of %d models compared", same, len(originals))
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestOracleLiteRT(t *testing.T) {
	t.Parallel()
	single := testenv.LiteRT(t)
	script, err := filepath.Abs("testdata/oracle/litert-batch.mjs")
	if err != nil {
		t.Fatal(err)
	}
	batch := []string{single[0], script, filepath.Dir(single[1])}
	checkOracle(t, "LiteRT.js", batch, single, func(string) bool { return false })
}

func TestOracleArmNN(t *testing.T) {
	t.Parallel()
	single := testenv.ArmNN(t)
	batch := []string{single[0], "testdata/oracle/armnn-batch.py"}
	// The 224×224 MobileNet takes Arm NN's reference backend 4 s per run.
	checkOracle(t, "Arm NN", batch, single, func(name string) bool { return strings.HasPrefix(name, "mobilenet_v2") })
}
