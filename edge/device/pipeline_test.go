package device

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Until the pneumonia model exists, these tests run third-party models with a 4-D image input,
// reading class 1 ("person") as the positive class.
func testModel(t testing.TB, name string, cfg ModelConfig) *EngineModel {
	t.Helper()
	cfg.Path = testenv.SharedPath(t, "models", name)
	if cfg.Output == "" {
		cfg.Output = "auto"
	}
	if cfg.PositiveIndex == 0 {
		cfg.PositiveIndex = 1
	}
	m, err := LoadModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readShared(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(testenv.SharedPath(t, elem...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadModelDerivesSpec(t *testing.T) {
	for _, tc := range []struct {
		file    string
		w, h, c int
	}{
		{"vww_96_int8.tflite", 96, 96, 3},
		{"person_detect_int8_qdim0_DERIVED.tflite", 96, 96, 1},
		{"vww_96_float.tflite", 96, 96, 3},
	} {
		m := testModel(t, tc.file, ModelConfig{})
		s := m.Spec()
		if s.Width != tc.w || s.Height != tc.h || s.Channels != tc.c {
			t.Errorf("%s: spec %+v", tc.file, s)
		}
		if m.Threshold() != DefaultThreshold || len(m.Ref().SHA256) != 64 || m.Ref().Name != strings.TrimSuffix(tc.file, ".tflite") {
			t.Errorf("%s: threshold %v ref %+v", tc.file, m.Threshold(), m.Ref())
		}
	}
}

func TestLoadModelErrors(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.tflite")
	good := readShared(t, "models", "vww_96_int8.tflite")
	if err := os.WriteFile(corrupt, good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  ModelConfig
		want string
	}{
		{"missing", ModelConfig{Path: filepath.Join(dir, "nope.tflite")}, "no such file"},
		{"corrupt", ModelConfig{Path: corrupt}, "corrupt.tflite"},
		{"sha pin", ModelConfig{Path: testenv.SharedPath(t, "models", "vww_96_int8.tflite"), SHA256: strings.Repeat("0", 64)}, "model.sha256 pins"},
		{"not an image model", ModelConfig{Path: testenv.SharedPath(t, "models", "hello_world_int8_nosig_DERIVED.tflite")}, "want [1,H,W,1]"},
		{"positive index", ModelConfig{Path: testenv.SharedPath(t, "models", "vww_96_int8.tflite"), PositiveIndex: 2}, "positive_index"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadModel(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if !errors.Is(err, ErrModel) {
				t.Error("not ErrModel")
			}
		})
	}
}

func TestScoreFromValues(t *testing.T) {
	for _, tc := range []struct {
		vals []float64
		mode string
		pos  int
		want float64
	}{
		{[]float64{0.8}, "auto", 1, 0.8},
		{[]float64{0}, "auto", 1, 0},
		{[]float64{2}, "auto", 1, 1 / (1 + math.Exp(-2))},
		{[]float64{0.5}, "logit", 1, 1 / (1 + math.Exp(-0.5))},
		{[]float64{0.25, 0.75}, "auto", 1, 0.75},
		{[]float64{0.25, 0.75}, "auto", 0, 0.25},
		{[]float64{0.1, 0.2, 0.7}, "probability", 2, 0.7},
		{[]float64{1, 3}, "auto", 1, math.Exp(3) / (math.Exp(1) + math.Exp(3))},
		{[]float64{0.25, 0.75}, "logit", 1, math.Exp(0.75) / (math.Exp(0.25) + math.Exp(0.75))},
		{[]float64{-0.5}, "probability", 1, 0},
	} {
		got, err := scoreFromValues(tc.vals, tc.mode, tc.pos)
		if err != nil || math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%v %s %d: %v, %v; want %v", tc.vals, tc.mode, tc.pos, got, err, tc.want)
		}
	}
	for _, vals := range [][]float64{nil, {math.NaN()}, {0.1, math.Inf(1)}} {
		if _, err := scoreFromValues(vals, "auto", 1); err == nil {
			t.Errorf("%v accepted", vals)
		}
	}
	if _, err := scoreFromValues([]float64{0.5, 0.5}, "auto", 2); err == nil {
		t.Error("positive index out of range accepted")
	}
}

// recorder is an Indicator and Publisher that remembers what it was told.
type recorder struct {
	mu      sync.Mutex
	shown   []telemetry.Result
	notices int
}

func (r *recorder) Show(res telemetry.Result) {
	r.mu.Lock()
	r.shown = append(r.shown, res)
	r.mu.Unlock()
}
func (r *recorder) Notify() { r.mu.Lock(); r.notices++; r.mu.Unlock() }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestPipelineEndToEnd(t *testing.T) {
	st := openStore(t, t.TempDir())
	rec := &recorder{}
	metrics := NewMetrics(prometheus.NewRegistry())
	thr := 0.3
	p, err := NewPipeline(PipelineOptions{
		Scorer: testModel(t, "vww_96_int8.tflite", ModelConfig{}), Store: st, Publisher: rec, Indicator: rec,
		Threshold: &thr, StudyKey: []byte("0123456789abcdef0123456789abcdef"), Metrics: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	jpeg := readShared(t, "data", "fullres", "PNEUMONIA", "person23_bacteria_91.jpeg")
	res, err := p.Process(ctx, intake.Input{Source: intake.SourceFolder, Name: "a.jpeg", Format: intake.FormatJPEG, Data: jpeg, ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != st.ID(jpeg) || res.Schema != telemetry.SchemaResult || res.Threshold != 0.3 ||
		res.Image.Format != "jpeg" || res.Image.Width == 0 || res.Model.Name != "vww_96_int8" ||
		res.TimingsMs.Infer <= 0 || res.TimingsMs.Decode <= 0 || res.TimingsMs.Total < res.TimingsMs.Infer ||
		res.Score < 0 || res.Score > 1 {
		t.Errorf("result %+v", res)
	}
	if want := map[bool]string{true: telemetry.LabelPneumonia, false: telemetry.LabelNormal}[res.Score >= 0.3]; res.Label != want {
		t.Errorf("label %s for score %v at threshold 0.3", res.Label, res.Score)
	}
	stored, err := st.Result(res.ID)
	if err != nil || stored.Score != res.Score {
		t.Errorf("stored %+v, %v", stored, err)
	}
	ob, _ := st.Outbox(0)
	if len(ob) != 1 || ob[0].ResultID != res.ID {
		t.Errorf("outbox %+v", ob)
	}
	// The same bytes again: not scored twice, same result, no new outbox entry.
	again, err := p.Process(ctx, intake.Input{Source: intake.SourceHTTP, Format: intake.FormatJPEG, Data: jpeg, ReceivedAt: time.Now()})
	if err != nil || again.ID != res.ID || again.Score != res.Score || !again.ScoredAt.Equal(res.ScoredAt) {
		t.Errorf("duplicate: %+v %v", again, err)
	}
	if ob, _ := st.Outbox(0); len(ob) != 1 {
		t.Errorf("duplicate added to the outbox: %d entries", len(ob))
	}
	// A truncated JPEG: committed as unreadable with the reason.
	bad, err := p.Process(ctx, intake.Input{Source: intake.SourceFolder, Name: "b.jpeg", Format: intake.FormatJPEG, Data: jpeg[:len(jpeg)/4], ReceivedAt: time.Now()})
	if err != nil || bad.Label != telemetry.LabelUnreadable || !strings.Contains(bad.Reason, "imaging") {
		t.Errorf("truncated: %+v %v", bad, err)
	}
	// DICOM: the ACR-NEMA chest image; its study UID travels only as a keyed hash.
	dcm := readShared(t, "data", "dicom", "CR-MONO1-10-chest.dcm")
	dr, err := p.Process(ctx, intake.Input{Source: intake.SourceFolder, Name: "c.dcm", Format: intake.Sniff(dcm), Data: dcm, ReceivedAt: time.Now()})
	if err != nil || dr.Label == telemetry.LabelUnreadable || dr.Image.Format != "dicom" || dr.Image.Width != 440 {
		t.Errorf("dicom: %+v %v", dr, err)
	}
	rec.mu.Lock()
	if rec.notices != 3 || len(rec.shown) != 4 {
		t.Errorf("publisher notified %d times (want 3), indicator shown %d (want 4)", rec.notices, len(rec.shown))
	}
	rec.mu.Unlock()
	if s := p.Stats(); s.Scored != 2 || s.Failed != 1 || s.InferMsP50 <= 0 {
		t.Errorf("stats %+v", s)
	}
	var m dto.Metric
	if err := metrics.Results.WithLabelValues(telemetry.LabelUnreadable).Write(&m); err != nil || m.GetCounter().GetValue() != 1 {
		n := m.GetCounter().GetValue()
		t.Errorf("unreadable counter = %v", n)
	}
}

// An input recorded but not committed (a crash, or shutdown mid-image) is scored by Recover.
func TestPipelineRecoverAndRequeue(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	model := testModel(t, "person_detect_int8_qdim0_DERIVED.tflite", ModelConfig{})
	p, err := NewPipeline(PipelineOptions{Scorer: model, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	jpeg := readShared(t, "data", "fullres", "NORMAL", "IM-0149-0001.jpeg")
	// Shutdown while processing: cancelled context, nothing committed, input left pending.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Process(ctx, intake.Input{Source: intake.SourceHTTP, Format: intake.FormatJPEG, Data: jpeg, ReceivedAt: time.Now()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if pend, _ := st.Pending(); len(pend) != 1 {
		t.Fatalf("pending = %d, want the input re-queued", len(pend))
	}
	n, err := p.Recover(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	if pend, _ := st.Pending(); len(pend) != 0 {
		t.Errorf("still pending after Recover: %d", len(pend))
	}
	r, err := st.Result(st.ID(jpeg))
	if err != nil || r.Label == telemetry.LabelUnreadable || r.Source != intake.SourceHTTP {
		t.Errorf("recovered result %+v, %v", r, err)
	}
}

// Without a store (cxr-edge score) the pipeline scores and records nothing; the score of a
// grey model and its RGB twin path is deterministic. Its ids are keyed per pipeline: the same
// image gets the same id within a run and another id in another run, never its plain sha256.
func TestPipelineWithoutStoreIsDeterministic(t *testing.T) {
	p, err := NewPipeline(PipelineOptions{Scorer: testModel(t, "person_detect_int8_qdim0_DERIVED.tflite", ModelConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	jpeg := readShared(t, "data", "fullres", "NORMAL", "IM-0189-0001.jpeg")
	a, _ := p.Process(context.Background(), intake.Input{Source: "cli", Data: jpeg})
	b, _ := p.Process(context.Background(), intake.Input{Source: "cli", Data: jpeg})
	if a.Score != b.Score || a.Label == telemetry.LabelUnreadable || a.Image.Format != "jpeg" {
		t.Errorf("a=%+v b=%+v", a, b)
	}
	p2, err := NewPipeline(PipelineOptions{Scorer: p.Scorer()})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := p2.Process(context.Background(), intake.Input{Source: "cli", Data: jpeg})
	sum := sha256.Sum256(jpeg)
	if a.ID != b.ID || a.ID == c.ID || a.ID == hex.EncodeToString(sum[:]) || len(a.ID) != 64 {
		t.Errorf("ids: %s, %s again, %s in another run", a.ID, b.ID, c.ID)
	}
	if _, err := NewPipeline(PipelineOptions{}); err == nil {
		t.Error("pipeline without scorer accepted")
	}
}

func TestPipelineDecodeTimeout(t *testing.T) {
	p, err := NewPipeline(PipelineOptions{
		Scorer:        testModel(t, "person_detect_int8_qdim0_DERIVED.tflite", ModelConfig{}),
		DecodeTimeout: time.Nanosecond, // nothing decodes in 1 ns
	})
	if err != nil {
		t.Fatal(err)
	}
	jpeg := readShared(t, "data", "fullres", "PNEUMONIA", "person1442_bacteria_3726.jpeg")
	r, err := p.Process(context.Background(), intake.Input{Source: "cli", Data: jpeg})
	if err != nil || r.Label != telemetry.LabelUnreadable || !strings.Contains(r.Reason, "intake.decode_timeout") {
		t.Errorf("%+v %v", r, err)
	}
}

// Concurrent arrivals of the same image are scored once.
func TestPipelineConcurrentDuplicates(t *testing.T) {
	st := openStore(t, t.TempDir())
	p, err := NewPipeline(PipelineOptions{Scorer: testModel(t, "person_detect_int8_qdim0_DERIVED.tflite", ModelConfig{}), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	jpeg := readShared(t, "data", "fullres", "PNEUMONIA", "person325_bacteria_1502.jpeg")
	var wg sync.WaitGroup
	results := make([]telemetry.Result, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := p.Process(context.Background(), intake.Input{Source: intake.SourceHTTP, Data: jpeg, ReceivedAt: time.Now()})
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
	}
	wg.Wait()
	for _, r := range results[1:] {
		if !r.ScoredAt.Equal(results[0].ScoredAt) {
			t.Error("scored more than once")
		}
	}
	if s := p.Stats(); s.Scored != 1 {
		t.Errorf("scored %d times", s.Scored)
	}
}

// The model's own operating point comes from its "cxr_threshold" metadata (written by
// cxr-quantize); model.threshold overrides it.
func TestModelThresholdFromMetadata(t *testing.T) {
	tm, err := tflite.Read(readShared(t, "models", "vww_96_int8.tflite"))
	if err != nil {
		t.Fatal(err)
	}
	tm.Buffers = append(tm.Buffers, tflite.Buffer{Data: []byte("0.370000")})
	tm.Metadata = append(tm.Metadata, tflite.Metadata{Name: imaging.ThresholdMetadata, Buffer: uint32(len(tm.Buffers) - 1)})
	data, err := tflite.Write(tm)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadModelBytes(data, "pneumonia.tflite", ModelConfig{Output: "auto", PositiveIndex: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := 0.37
	if m.Threshold() != want || m.Ref().Name != "pneumonia" {
		t.Errorf("threshold %v, ref %+v", m.Threshold(), m.Ref())
	}
	p, _ := NewPipeline(PipelineOptions{Scorer: m})
	if p.Threshold() != want {
		t.Errorf("pipeline threshold %v", p.Threshold())
	}
	over := 0.6
	p, _ = NewPipeline(PipelineOptions{Scorer: m, Threshold: &over})
	if p.Threshold() != 0.6 {
		t.Errorf("override ignored: %v", p.Threshold())
	}
	// A damaged operating point is refused rather than silently replaced by the default.
	for _, bad := range []string{"1.5", "abc", "0"} {
		tm.SetMetadata(imaging.ThresholdMetadata, []byte(bad))
		data, err := tflite.Write(tm)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := LoadModelBytes(data, "pneumonia.tflite", ModelConfig{Output: "auto", PositiveIndex: 1}); !errors.Is(err, ErrModel) || !errors.Is(err, imaging.ErrSpec) {
			t.Errorf("threshold %q: %v, want ErrModel wrapping imaging.ErrSpec", bad, err)
		}
	}
}
