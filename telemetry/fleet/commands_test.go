package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

func TestLoadOperators(t *testing.T) {
	tok, line, err := NewOperatorToken("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	_, bobLine, _ := NewOperatorToken("bob", "")
	if _, _, err := NewOperatorToken("a b", ""); err == nil {
		t.Error("an operator name with a space was accepted")
	}
	_, deskLine, err := NewOperatorToken("desk", "ping")
	if err != nil || !strings.HasSuffix(deskLine, " ping") {
		t.Fatalf("limited operator line %q, %v", deskLine, err)
	}
	for _, bad := range []string{"reboot", "ping,ping", "ping,", " ping"} {
		if _, _, err := NewOperatorToken("desk", bad); err == nil {
			t.Errorf("commands %q accepted", bad)
		}
	}
	tests := []struct {
		name, file string
		want       []string // operator names and what they may send
		err        string
	}{
		{"one", line + "\n", []string{"alice:all"}, ""},
		{"comments and blanks", "# IT desk\n\n" + line + "  # since May\n" + bobLine + "\n", []string{"alice:all", "bob:all"}, ""},
		{"limited", deskLine + "\n" + line + " set-threshold,ping\n", []string{"desk:[ping]", "alice:[set-threshold ping]"}, ""},
		{"empty", "# nobody yet\n", nil, "lists no operator"},
		{"token instead of hash", "alice " + tok + "\n", nil, "line 1: the hash is not 64 hex digits"},
		{"unknown command", line + " extra\n", nil, `line 1: unknown command "extra"`},
		{"command twice", line + " ping,ping\n", nil, `line 1: command "ping" listed twice`},
		{"four fields", line + " ping extra\n", nil, "line 1: 4 fields"},
		{"bad name", strings.Replace(line, "alice", "al/ice", 1), nil, "name \"al/ice\""},
		{"twice", line + "\n" + line + "\n", nil, "line 2: operator \"alice\" listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "operators")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			ops, err := LoadOperators(path)
			if tc.err != "" {
				if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want ErrConfig with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, o := range ops {
				may := "all"
				if o.Commands != nil {
					may = fmt.Sprint(o.Commands)
				}
				names = append(names, o.Name+":"+may)
			}
			if fmt.Sprint(names) != fmt.Sprint(tc.want) {
				t.Errorf("operators %v, want %v", names, tc.want)
			}
		})
	}
	if _, err := LoadOperators(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrConfig) {
		t.Errorf("missing file: %v", err)
	}

	// The token authenticates as its operator; anything else does not.
	path := filepath.Join(t.TempDir(), "operators")
	os.WriteFile(path, []byte(line+"\n"+bobLine+"\n"), 0o600)
	ops, err := LoadOperators(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		header string
		want   string
	}{
		{"Bearer " + tok, "alice"},
		{"Bearer " + tok[:len(tok)-1] + "x", ""},
		{"Basic " + tok, ""},
		{"Bearer short", ""},
		{"", ""},
	} {
		r, _ := http.NewRequest("POST", "/", nil)
		r.Header.Set("Authorization", c.header)
		if got, ok := authenticate(ops, r); got.Name != c.want || ok != (c.want != "") {
			t.Errorf("Authorization %q: operator %q %v, want %q", c.header, got, ok, c.want)
		}
	}
}

// siteHandler stands in for the daemon's command handler: it keeps the operating point of the
// one model it runs and refuses a threshold for another model, as the daemon does.
type siteHandler struct {
	mu  sync.Mutex
	set []float64
}

func (h *siteHandler) ReloadModel(context.Context, telemetry.ReloadModelCommand) (telemetry.ModelRef, error) {
	return telemetry.ModelRef{}, errors.New("not in this test")
}

func (h *siteHandler) SetThreshold(_ context.Context, c telemetry.SetThresholdCommand) (telemetry.OperatingPoint, error) {
	if c.ModelSHA256 != testModel.SHA256 {
		return telemetry.OperatingPoint{}, fmt.Errorf("model %s is not the running model", c.ModelSHA256)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	th := 0.13
	if c.Threshold != nil {
		th = *c.Threshold
		h.set = append(h.set, th)
	}
	return telemetry.OperatingPoint{Threshold: th, Source: telemetry.ThresholdSite, Model: testModel}, nil
}

func (h *siteHandler) calls() []float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]float64(nil), h.set...)
}

// runDevice runs the device's real telemetry.Publisher with handler h until the returned
// stop is called (or the test ends).
func runDevice(t *testing.T, r *running, broker, site, id string, h telemetry.CommandHandler) (stop func()) {
	t.Helper()
	tp, _ := telemetry.NewTopics("cxr", site, id)
	pub, err := telemetry.NewPublisher(telemetry.PublisherOptions{Broker: broker, Topics: tp, Version: "1.2.0", Model: testModel,
		HealthInterval: 200 * time.Millisecond, Logger: r.opts.Logger}, &memOutbox{}, fixedHealth{}, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = pub.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// post sends a command as an operator would and decodes the answer.
func post(t *testing.T, base, path, token, body string) (int, AuditEntry) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e AuditEntry
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	return resp.StatusCode, e
}

// operatorsFile writes an operators file admitting each of operators ("NAME" or "NAME
// COMMANDS") and returns its path and their tokens, in order.
func operatorsFile(t *testing.T, operators ...string) (path string, tokens []string) {
	t.Helper()
	var file strings.Builder
	for _, op := range operators {
		name, commands, _ := strings.Cut(op, " ")
		token, line, err := NewOperatorToken(name, commands)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, token)
		file.WriteString(line + "\n")
	}
	path = filepath.Join(t.TempDir(), "operators")
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, tokens
}

// commandSetup starts Mosquitto, a dashboard admitting operators (see operatorsFile; replies
// awaited 2 s), and the device's real publisher site/dev with a siteHandler, and waits until
// the dashboard knows the device.
func commandSetup(t *testing.T, site, dev string, operators ...string) (r *running, tokens []string, h *siteHandler, stopDevice func()) {
	t.Helper()
	b := broker(t)
	o := testOptions(t, b.URL())
	o.Commands.OperatorsFile, tokens = operatorsFile(t, operators...)
	o.Commands.ReplyTimeout = 2 * time.Second
	r = start(t, o)
	h = &siteHandler{}
	stopDevice = runDevice(t, r, b.URL(), site, dev, h)
	testenv.WaitFor(t, "device known", func() bool { _, ok := r.state.Device(site, dev); return ok })
	return r, tokens, h, stopDevice
}

// auditTrail is GET /api/commands for one device, newest first.
func auditTrail(t *testing.T, base, site, dev string) []AuditEntry {
	t.Helper()
	_, _, body := get(t, base+"/api/commands?site="+site+"&device="+dev)
	var trail []AuditEntry
	if err := json.Unmarshal([]byte(body), &trail); err != nil {
		t.Fatal(err)
	}
	return trail
}

// TestCommandsThroughBroker: an operator sets a device's operating point from the dashboard;
// the command crosses a real Mosquitto to the device's own publisher, its reply comes back to
// the request, and the attempt is in the audit trail. Wrong tokens, invalid commands, unknown
// and offline devices get clear answers and send nothing.
func TestCommandsThroughBroker(t *testing.T) {
	r, toks, h, stopDevice := commandSetup(t, "clinic-north", "cxr-01", "alice")
	tok := toks[0]

	const path = "/api/devices/clinic-north/cxr-01/cmd/"
	set := func(th string) string {
		return `{"threshold":` + th + `,"model_sha256":"` + strings.ToUpper(testModel.SHA256) + `"}`
	}
	tests := []struct {
		name, cmd, token, body string
		code                   int
		outcome, errText       string
	}{
		{"no token", "set-threshold", "", set("0.3"), 401, OutcomeDenied, "operator token"},
		{"wrong token", "set-threshold", tok[:len(tok)-2] + "xx", set("0.3"), 401, OutcomeDenied, "operator token"},
		{"threshold out of range", "set-threshold", tok, set("1.5"), 400, OutcomeInvalid, "strictly between 0 and 1"},
		{"not JSON", "set-threshold", tok, `threshold=0.3`, 400, OutcomeInvalid, "not valid JSON"},
		{"unknown command", "reboot", tok, `{}`, 400, OutcomeInvalid, `unknown command "reboot"`},
		{"set", "set-threshold", tok, set("0.31"), 200, OutcomeOK, ""},
		{"another model", "set-threshold", tok, `{"threshold":0.2,"model_sha256":"` + strings.Repeat("0", 64) + `"}`, 200, OutcomeRefused, "is not the running model"},
		{"ping", "ping", tok, ``, 200, OutcomeOK, ""},
		{"clear", "set-threshold", tok, set("null"), 200, OutcomeOK, ""},
	}
	for _, tc := range tests {
		code, e := post(t, r.http.URL, path+tc.cmd, tc.token, tc.body)
		if code != tc.code || e.Outcome != tc.outcome || !strings.Contains(e.Error, tc.errText) {
			t.Errorf("%s: %d %+v, want %d %s with %q", tc.name, code, e, tc.code, tc.outcome, tc.errText)
		}
		if tc.outcome == OutcomeOK && (e.Reply == nil || !e.Reply.OK || e.Reply.ID != e.ID || e.Operator != "alice") {
			t.Fatalf("%s: reply %+v of %+v", tc.name, e.Reply, e)
		}
		if tc.name == "set" {
			var op telemetry.OperatingPoint
			raw, _ := json.Marshal(e.Reply.Detail)
			if err := json.Unmarshal(raw, &op); err != nil || op.Threshold != 0.31 || op.Source != telemetry.ThresholdSite {
				t.Errorf("set: operating point %s", raw)
			}
		}
	}
	if got := h.calls(); len(got) != 1 || got[0] != 0.31 {
		t.Errorf("device set thresholds %v, want only [0.31] (nothing invalid reaches it)", got)
	}
	if code, e := post(t, r.http.URL, "/api/devices/clinic-north/cxr-99/cmd/ping", tok, ``); code != 404 || !strings.Contains(e.Error, "not known") || e.Operator != "alice" {
		t.Errorf("unknown device: %d %+v", code, e)
	}

	// An offline device: the command goes out, no reply comes, the operator is told so.
	stopDevice()
	testenv.WaitFor(t, "device offline", func() bool {
		d, _ := r.state.Device("clinic-north", "cxr-01")
		return d.State == telemetry.StateOffline
	})
	if code, e := post(t, r.http.URL, path+"ping", tok, `{}`); code != 202 || e.Outcome != OutcomeNoReply || e.ID == "" {
		t.Errorf("offline device: %d %+v", code, e)
	}

	// The audit trail holds every attempt an operator made (refused tokens are only counted),
	// newest first, with what was sent.
	trail := auditTrail(t, r.http.URL, "clinic-north", "cxr-01")
	var outcomes []string
	for _, e := range trail {
		outcomes = append(outcomes, e.Outcome)
		if e.Operator != "alice" || e.Remote == "" || e.TS.IsZero() {
			t.Errorf("audit entry without operator, remote or time: %+v", e)
		}
	}
	want := []string{OutcomeNoReply, OutcomeOK, OutcomeOK, OutcomeRefused, OutcomeOK, OutcomeInvalid, OutcomeInvalid, OutcomeInvalid}
	if fmt.Sprint(outcomes) != fmt.Sprint(want) {
		t.Errorf("audit outcomes %v, want %v", outcomes, want)
	}
	if len(trail) > 4 && !bytes.Contains(trail[4].Args, []byte(`"threshold":0.31`)) {
		t.Errorf("audit args %s, want the command sent", trail[4].Args)
	}
	_, _, metrics := get(t, r.http.URL+"/metrics")
	for _, m := range []string{`cxr_dashboard_commands_total{command="set-threshold",outcome="denied"} 2`, `cxr_dashboard_commands_total{command="set-threshold",outcome="ok"} 2`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

// With a shared subscription the broker hands each message to one dashboard of the group; a
// command's reply must still reach the dashboard that sent it.
func TestCommandRepliesWithSharedGroup(t *testing.T) {
	b := broker(t)
	var dash [2]*running
	ops, toks := operatorsFile(t, "ops")
	tok := toks[0]
	for i := range dash {
		o := testOptions(t, b.URL())
		o.MQTT.ClientID += fmt.Sprint(i)
		o.MQTT.SharedGroup = "dashboards"
		o.Commands.OperatorsFile = ops
		o.Commands.ReplyTimeout = 3 * time.Second
		dash[i] = start(t, o)
	}
	runDevice(t, dash[0], b.URL(), "site-a", "dev-1", &siteHandler{})
	// Health every 200 ms: both members of the group soon know the device.
	for _, d := range dash {
		testenv.WaitFor(t, "device known", func() bool { _, ok := d.state.Device("site-a", "dev-1"); return ok })
	}
	for i := range 6 {
		code, e := post(t, dash[0].http.URL, "/api/devices/site-a/dev-1/cmd/ping", tok, ``)
		if code != 200 || e.Outcome != OutcomeOK {
			t.Fatalf("ping %d from one dashboard of the group: %d %+v", i, code, e)
		}
	}
}

// An operator limited to ping (`cxr-dashboard token desk ping`) can ping but not change a
// device's operating point: 403, nothing reaches the device, and the attempt is audited.
func TestOperatorPermissions(t *testing.T) {
	r, toks, h, _ := commandSetup(t, "site-a", "dev-1", "desk ping", "admin")
	deskTok, adminTok := toks[0], toks[1]

	const path = "/api/devices/site-a/dev-1/cmd/"
	set := `{"threshold":0.3,"model_sha256":"` + testModel.SHA256 + `"}`
	for _, c := range []struct {
		who, token, cmd, body string
		code                  int
		outcome               string
	}{
		{"desk", deskTok, "ping", ``, 200, OutcomeOK},
		{"desk", deskTok, "set-threshold", set, 403, OutcomeForbidden},
		{"desk", deskTok, "reload-model", `{"path":"/x.tflite","sha256":"` + testModel.SHA256 + `"}`, 403, OutcomeForbidden},
		{"desk", deskTok, "reboot", `{}`, 400, OutcomeInvalid},
		{"admin", adminTok, "set-threshold", set, 200, OutcomeOK},
	} {
		code, e := post(t, r.http.URL, path+c.cmd, c.token, c.body)
		if code != c.code || e.Outcome != c.outcome || e.Operator != c.who {
			t.Errorf("%s %s: %d %+v, want %d %s", c.who, c.cmd, code, e, c.code, c.outcome)
		}
		if c.outcome == OutcomeForbidden && (!strings.Contains(e.Error, "desk may send only ping") || e.ID != "") {
			t.Errorf("%s %s: %+v, want the refusal explained and nothing sent", c.who, c.cmd, e)
		}
	}
	if got := h.calls(); len(got) != 1 || got[0] != 0.3 {
		t.Errorf("device set thresholds %v, want only the admin's 0.3", got)
	}
	var got []string
	for _, e := range auditTrail(t, r.http.URL, "site-a", "dev-1") {
		got = append(got, e.Operator+":"+e.Outcome)
	}
	if want := "[admin:ok desk:invalid desk:forbidden desk:forbidden desk:ok]"; fmt.Sprint(got) != want {
		t.Errorf("audit trail %v, want %s", got, want)
	}
}

func TestCommandsDisabled(t *testing.T) {
	o := testOptions(t, "")
	r := start(t, o)
	req, _ := http.NewRequest("POST", r.http.URL+"/api/devices/a/b/cmd/ping", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "commands are disabled") {
		t.Errorf("without operators: %d %s", resp.StatusCode, b)
	}
}

// The audit trail keeps the last AuditMax entries, newest first, filtered by site and device.
func TestAuditTrailBounded(t *testing.T) {
	st, err := openStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	for i := range 7 {
		dev := []string{"a", "b"}[i%2]
		if err := st.addAudit(AuditEntry{Site: "s", Device: dev, Command: "ping", ID: fmt.Sprint(i), Outcome: OutcomeOK}, 4); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		device string
		limit  int
		want   string
	}{
		{"", 10, "[6 5 4 3]"}, {"", 2, "[6 5]"}, {"a", 10, "[6 4]"}, {"b", 10, "[5 3]"},
	} {
		es, err := st.audits("s", c.device, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		if fmt.Sprint(ids) != c.want {
			t.Errorf("device %q limit %d: ids %v, want %s", c.device, c.limit, ids, c.want)
		}
	}
}
