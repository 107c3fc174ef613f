package telemetry_test

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

func TestParseReloadModel(t *testing.T) {
	sha := strings.Repeat("0f", 32)
	cases := []struct {
		payload, err string
	}{
		{`{"path":"/m.tflite","sha256":"` + sha + `"}`, ""},
		{`{"id":"7","url":"https://h/m.tflite","sha256":"` + sha + `"}`, ""},
		{``, "exactly one"},
		{`{"sha256":"` + sha + `"}`, "exactly one"},
		{`{"path":"/a","url":"http://b","sha256":"` + sha + `"}`, "exactly one"},
		{`{"path":"/a","sha256":"` + sha[:62] + `"}`, "64 hex"},
		{`{"path":"/a","sha256":"` + strings.Repeat("zz", 32) + `"}`, "64 hex"},
		{`{"path":`, "not valid JSON"},
		{`[1,2]`, "not valid JSON"},
		{`{"path":"/a","sha256":"` + sha + `"}` + strings.Repeat(" ", telemetry.MaxCommandBytes), "exceeds"},
	}
	for _, c := range cases {
		_, err := telemetry.ParseReloadModel([]byte(c.payload))
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%.60q: err %v, want %q", c.payload, err, c.err)
		}
	}
	if c, err := telemetry.ParsePing(nil); err != nil || c.ID != "" {
		t.Errorf("empty ping: %+v %v", c, err)
	}
	if c, err := telemetry.ParsePing([]byte(`{"id":"x"}`)); err != nil || c.ID != "x" {
		t.Errorf("ping with id: %+v %v", c, err)
	}
}

func FuzzParseReloadModel(f *testing.F) {
	f.Add([]byte(`{"path":"/m.tflite","sha256":"` + strings.Repeat("ab", 32) + `"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := telemetry.ParseReloadModel(payload)
		if err != nil {
			return
		}
		if (c.URL == "") == (c.Path == "") {
			t.Fatalf("accepted %+v without exactly one source", c)
		}
		if b, herr := hex.DecodeString(c.SHA256); herr != nil || len(b) != 32 {
			t.Fatalf("accepted sha256 %q", c.SHA256)
		}
	})
}
