package device

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// TestDICOMStoreIntoDaemon: an X-ray unit (dcmtk's storescu) sends a radiograph to the running
// daemon over the DICOM network; it is scored with the embedded model exactly as the same file
// uploaded over HTTP, counted once if sent again, and a sender that is not listed is refused.
func TestDICOMStoreIntoDaemon(t *testing.T) {
	dir := t.TempDir()
	dcm := filepath.Join(dir, "xray.dcm")
	testenv.DCMTK(t, "img2dcm", "-q", testenv.SharedPath(t, "data", "fullres", "PNEUMONIA", firstFile(t, "PNEUMONIA")), filepath.Join(dir, "jpeg.dcm"))
	testenv.DCMTK(t, "dcmdjpeg", "-q", filepath.Join(dir, "jpeg.dcm"), dcm)

	l, _ := runTestDaemon(t, map[string]string{
		"CXR_INTAKE_HTTP_LISTEN":           "127.0.0.1:0",
		"CXR_INTAKE_DICOM_LISTEN":          "127.0.0.1:0",
		"CXR_INTAKE_DICOM_AE_TITLE":        "CXR-WARD3",
		"CXR_INTAKE_DICOM_ALLOWED_CALLERS": "XRAY1,XRAY2", // a list from the environment
	})
	_, port, _ := net.SplitHostPort(l.DICOM)
	storescu := func(calling string) (string, bool) {
		out, err := exec.Command(testenv.LookPath(t, "storescu"), "-aet", calling, "-aec", "CXR-WARD3", "127.0.0.1", port, dcm).CombinedOutput()
		return string(out), err == nil
	}
	results := func() []telemetry.Result { return recentResults(t, l.HTTP) }

	if out, ok := storescu("XRAY1"); !ok {
		t.Fatalf("storescu: %s", out)
	}
	rs := results()
	if len(rs) != 1 || rs[0].Source != "dicom" || rs[0].Label == telemetry.LabelUnreadable || rs[0].Image.Format != "dicom" {
		t.Fatalf("results after one C-STORE: %+v", rs)
	}
	data, err := os.ReadFile(dcm)
	if err != nil {
		t.Fatal(err)
	}
	viaHTTP := post(t, "http://"+l.HTTP, data)
	if viaHTTP.Score != rs[0].Score || viaHTTP.Label != rs[0].Label {
		t.Errorf("C-STORE scored %v (%s), the same file over HTTP %v (%s)", rs[0].Score, rs[0].Label, viaHTTP.Score, viaHTTP.Label)
	}
	t.Logf("C-STORE: %s %.4f; HTTP: %s %.4f", rs[0].Label, rs[0].Score, viaHTTP.Label, viaHTTP.Score)

	if out, ok := storescu("XRAY1"); !ok {
		t.Fatalf("storescu again: %s", out)
	}
	if out, ok := storescu("ROGUE"); ok || !strings.Contains(out, "Calling AE Title Not Recognized") {
		t.Errorf("an unlisted sender was not refused:\n%s", out)
	}
	if n := len(results()); n != 2 {
		t.Errorf("%d results, want 2: the instance sent twice counts once, the refused one not at all (plus the HTTP upload)", n)
	}
}

// TestDICOMStoreOverTLS: with a certificate, a key and a client CA configured, the Store SCP
// speaks only TLS and takes images only from a sender whose certificate that CA signed
// (dcmtk's storescu, as an X-ray unit with a certificate would send them); plain DICOM, an
// anonymous TLS sender and a certificate from another CA are all refused and store nothing.
func TestDICOMStoreOverTLS(t *testing.T) {
	dir := t.TempDir()
	pki := testenv.NewPKI(t, dir)
	dcm := filepath.Join(dir, "xray.dcm")
	testenv.DCMTK(t, "img2dcm", "-q", testenv.SharedPath(t, "data", "fullres", "NORMAL", firstFile(t, "NORMAL")), dcm)
	l, _ := runTestDaemon(t, map[string]string{
		"CXR_INTAKE_HTTP_LISTEN":         "127.0.0.1:0",
		"CXR_INTAKE_DICOM_LISTEN":        "127.0.0.1:0",
		"CXR_INTAKE_DICOM_TLS_CERT":      pki.ServerCert,
		"CXR_INTAKE_DICOM_TLS_KEY":       pki.ServerKey,
		"CXR_INTAKE_DICOM_TLS_CLIENT_CA": pki.CAFile,
	})
	_, port, _ := net.SplitHostPort(l.DICOM)
	for _, tc := range []struct {
		name string
		tls  []string // storescu's TLS arguments
		ok   bool
	}{
		{"plain DICOM", nil, false},
		{"anonymous TLS", []string{"+tla", "+cf", pki.CAFile}, false},
		{"certificate of another CA", []string{"+tls", pki.OtherKey, pki.OtherCert, "+cf", pki.CAFile}, false},
		{"certificate of the clinic's CA", []string{"+tls", pki.ClientKey, pki.ClientCert, "+cf", pki.CAFile}, true},
	} {
		args := append(append([]string{"-xy", "-to", "10", "-aec", "CXR-EDGE"}, tc.tls...), "127.0.0.1", port, dcm)
		out, err := exec.Command(testenv.LookPath(t, "storescu"), args...).CombinedOutput()
		switch {
		case (err == nil) != tc.ok:
			t.Errorf("%s: storescu succeeded %v, want %v:\n%s", tc.name, err == nil, tc.ok, out)
		case !tc.ok && !strings.Contains(string(out), "Association Request Failed"):
			t.Errorf("%s: refused later than at the association, so an image might have been stored:\n%s", tc.name, out)
		}
	}
	if rs := recentResults(t, l.HTTP); len(rs) != 1 || rs[0].Source != "dicom" || rs[0].Label == telemetry.LabelUnreadable {
		t.Errorf("results: %+v, want the one image sent with the clinic's certificate", rs)
	}
}

// recentResults asks the daemon's HTTP API for its latest results.
func recentResults(t *testing.T, httpAddr string) []telemetry.Result {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/v1/results?limit=10")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Results []telemetry.Result }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Results
}

func firstFile(t *testing.T, class string) string {
	t.Helper()
	es, err := os.ReadDir(testenv.SharedPath(t, "data", "fullres", class))
	if err != nil || len(es) == 0 {
		t.Fatalf("fullres/%s: %v", class, err)
	}
	return es[0].Name()
}
