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

func TestParseSetThreshold(t *testing.T) {
	sha := strings.Repeat("AB", 32)
	for _, c := range []struct {
		payload string
		want    *float64 // when err is ""
		err     string
	}{
		{`{"threshold":0.31,"model_sha256":"` + sha + `"}`, ptr(0.31), ""},
		{`{"threshold":null,"model_sha256":"` + sha + `"}`, nil, ""},
		{`{"model_sha256":"` + sha + `"}`, nil, ""},
		{`{"threshold":0,"model_sha256":"` + sha + `"}`, nil, "strictly between 0 and 1"},
		{`{"threshold":1,"model_sha256":"` + sha + `"}`, nil, "strictly between 0 and 1"},
		{`{"threshold":-0.2,"model_sha256":"` + sha + `"}`, nil, "strictly between 0 and 1"},
		{`{"threshold":"0.3","model_sha256":"` + sha + `"}`, nil, "not valid JSON"},
		{`{"threshold":0.3}`, nil, "model_sha256"},
		{`{"threshold":0.3,"model_sha256":"abc"}`, nil, "model_sha256"},
		{``, nil, "model_sha256"},
	} {
		got, err := telemetry.ParseSetThreshold([]byte(c.payload))
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want %q", c.payload, err, c.err)
			}
		case err != nil:
			t.Errorf("%s: %v", c.payload, err)
		case (got.Threshold == nil) != (c.want == nil) || (c.want != nil && *got.Threshold != *c.want):
			t.Errorf("%s: threshold %v, want %v", c.payload, got.Threshold, c.want)
		case got.ModelSHA256 != strings.ToLower(sha):
			t.Errorf("%s: model_sha256 %q, want it in lower case", c.payload, got.ModelSHA256)
		}
	}
}

func FuzzParseSetThreshold(f *testing.F) {
	f.Add([]byte(`{"id":"t1","threshold":0.31,"model_sha256":"` + strings.Repeat("ab", 32) + `"}`))
	f.Add([]byte(`{"threshold":null,"model_sha256":"` + strings.Repeat("ab", 32) + `"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := telemetry.ParseSetThreshold(payload)
		if err != nil {
			return
		}
		if b, herr := hex.DecodeString(c.ModelSHA256); herr != nil || len(b) != 32 || strings.ToLower(c.ModelSHA256) != c.ModelSHA256 {
			t.Fatalf("accepted model_sha256 %q", c.ModelSHA256)
		}
		if c.Threshold != nil && !(*c.Threshold > 0 && *c.Threshold < 1) {
			t.Fatalf("accepted threshold %v", *c.Threshold)
		}
	})
}
