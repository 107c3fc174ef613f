package quantize

import (
	"context"
	"fmt"
	"sync"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
)

// ScoreTFLite runs a .tflite classifier with one grey image input and one probability output in
// the Go engine on grey images (each the model's width × height, from imaging.Grey), in
// parallel on workers goroutines, and returns the dequantized outputs.
func ScoreTFLite(ctx context.Context, model []byte, grey [][]uint8, workers int) ([]float32, error) {
	c, err := loadClassifier(model)
	if err != nil {
		return nil, err
	}
	em, spec := c.em, c.spec
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
				p, err := probability(ip.Output(0), ip.Output(0).Info())
				if err != nil {
					errs[w] = err
					return
				}
				scores[i] = p
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
