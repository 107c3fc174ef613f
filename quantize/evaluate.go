package quantize

import (
	"context"
	"fmt"
	"sync"

	"github.com/cxr-edge/cxr-edge/edge/engine"
	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// ScoreTFLite runs a .tflite classifier with one grey image input and one probability output in
// the Go engine on grey images (each the model's width × height, from imaging.Grey), in
// parallel on workers goroutines, and returns the dequantized outputs.
func ScoreTFLite(ctx context.Context, model []byte, grey [][]uint8, workers int) ([]float32, error) {
	em, err := engine.LoadBytes(model, engine.Options{Threads: 1})
	if err != nil {
		return nil, err
	}
	ins, outs := em.Inputs(), em.Outputs()
	if len(ins) != 1 || len(outs) != 1 || len(ins[0].Shape) != 4 || ins[0].Shape[3] != 1 {
		return nil, fmt.Errorf("%w: want one [1,H,W,1] input and one output", ErrExport)
	}
	in := ins[0]
	spec := imaging.InputSpec{Height: in.Shape[1], Width: in.Shape[2], Channels: 1}
	switch in.Type {
	case tflite.Int8:
		spec.Type = imaging.Int8
	case tflite.Uint8:
		spec.Type = imaging.Uint8
	case tflite.Float32:
		spec.Type = imaging.Float32
	default:
		return nil, fmt.Errorf("%w: input type %v", ErrExport, in.Type)
	}
	if spec.Type != imaging.Float32 {
		spec.Scale, spec.ZeroPoint = in.Scale[0], int32(in.ZeroPoint[0])
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	scores := make([]float32, len(grey))
	workers = max(workers, 1)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := em.NewInterpreter()
			defer ip.Close()
			for i := w; i < len(grey); i += workers {
				if len(grey[i]) != spec.Width*spec.Height {
					errs[w] = fmt.Errorf("%w: image %d has %d pixels, model wants %dx%d", ErrExport, i, len(grey[i]), spec.Width, spec.Height)
					return
				}
				imaging.Quantize(grey[i], spec, ip.Input(0).Bytes())
				if err := ip.Invoke(ctx); err != nil {
					errs[w] = err
					return
				}
				out := ip.Output(0)
				info := out.Info()
				switch info.Type {
				case tflite.Int8:
					scores[i] = float32(float64(int64(out.Int8()[0])-info.ZeroPoint[0]) * float64(info.Scale[0]))
				case tflite.Uint8:
					scores[i] = float32(float64(int64(out.Uint8()[0])-info.ZeroPoint[0]) * float64(info.Scale[0]))
				case tflite.Float32:
					scores[i] = out.Float32()[0]
				default:
					errs[w] = fmt.Errorf("%w: output type %v", ErrExport, info.Type)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return scores, nil
}
