package device

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// BenchmarkProcess measures one image through the pipeline with and without the durable
// store, so the ratio store/nostore is the cost of recording input and result (fsync'd).
// Each iteration's bytes differ (a counter after the JPEG's end marker, which decoders
// ignore) so that deduplication does not skip the work.
//
//	go test -run XXX -bench Process -benchtime 20x ./edge/device
func BenchmarkProcess(b *testing.B) {
	jpeg := readShared(b, "data", "fullres", "PNEUMONIA", "person1615_bacteria_4249.jpeg")
	model := testModel(b, "vww_96_int8.tflite", ModelConfig{})
	for _, withStore := range []bool{false, true} {
		name := "nostore"
		opts := PipelineOptions{Scorer: model, Logger: discardLogger()}
		if withStore {
			name = "store"
			st := openStore(b, b.TempDir())
			opts.Store = st
		}
		b.Run(name, func(b *testing.B) {
			p, err := NewPipeline(opts)
			if err != nil {
				b.Fatal(err)
			}
			data := append(append([]byte(nil), jpeg...), make([]byte, 8)...)
			var infer, total float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				binary.LittleEndian.PutUint64(data[len(jpeg):], uint64(i)+uint64(time.Now().UnixNano()))
				r, err := p.Process(context.Background(), intake.Input{Source: "bench", Format: intake.FormatJPEG, Data: data, ReceivedAt: time.Now()})
				if err != nil || r.Label == telemetry.LabelUnreadable {
					b.Fatalf("%+v %v", r, err)
				}
				infer += r.TimingsMs.Infer
				total += r.TimingsMs.Total
			}
			b.ReportMetric(infer/float64(b.N), "infer-ms/op")
			b.ReportMetric(total/float64(b.N), "pipeline-ms/op")
		})
	}
}
