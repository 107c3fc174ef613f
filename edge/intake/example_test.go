package intake_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

func ExampleSniff() {
	fmt.Printf("%q\n", intake.Sniff([]byte{0xFF, 0xD8, 0xFF, 0xE0}))
	fmt.Printf("%q\n", intake.Sniff([]byte("\x89PNG\r\n\x1a\n")))
	fmt.Printf("%q\n", intake.Sniff([]byte("just text")))
	// Output:
	// "jpeg"
	// "png"
	// ""
}

// results is a tiny Results for the example; the daemon passes its store.
type results struct{}

func (results) Result(id string) (telemetry.Result, error) {
	return telemetry.Result{}, intake.ErrNotFound
}
func (results) Results(n int) ([]telemetry.Result, error) { return nil, nil }

func ExampleNewHTTPHandler() {
	proc := intake.ProcessorFunc(func(ctx context.Context, in intake.Input) (telemetry.Result, error) {
		return telemetry.Result{Schema: telemetry.SchemaResult, Source: in.Source, Label: telemetry.LabelNormal}, nil
	})
	h, err := intake.NewHTTPHandler(intake.HTTPOptions{Processor: proc, Results: results{}})
	if err != nil {
		panic(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/studies", strings.NewReader("plain text")))
	fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	// Output:
	// 415 {
	//   "error": "intake: unsupported format (want JPEG, PNG or DICOM)"
	// }
}
