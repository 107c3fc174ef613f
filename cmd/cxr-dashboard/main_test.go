package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
	"github.com/cxr-edge/cxr-edge/telemetry/fleet"
)

// TestServe runs the command as systemd would (flags over the shipped defaults) against a
// real broker: /healthz answers, a device's result shows up in the API, and cancelling the
// context (SIGTERM) makes serve return nil.
func TestServe(t *testing.T) {
	b := testenv.Mosquitto(t, testenv.BrokerOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	// Port 0, and the address read from the log: a port picked here could be taken before
	// serve binds it.
	logs := &testenv.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	go func() {
		done <- serve(ctx, log, []string{"--mqtt.broker", b.URL(), "--http.listen", "127.0.0.1:0", "--store.dir", t.TempDir()})
	}()
	var base string
	listening := regexp.MustCompile(`cxr-dashboard listening" http=(http://127\.0\.0\.1:[0-9]+)`)
	testenv.WaitFor(t, "the listening address in the log", func() bool {
		m := listening.FindStringSubmatch(logs.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	})
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	testenv.WaitFor(t, "/healthz ok", func() bool { code, _ := get("/healthz"); return code == http.StatusOK })

	// A device publishes one result; retry until the dashboard, which subscribes
	// asynchronously, has it.
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("serve-test-device"))
	if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	defer c.Disconnect(50)
	tp, _ := telemetry.NewTopics("cxr", "clinic-1", "cxr-01")
	res, _ := json.Marshal(telemetry.Result{Schema: telemetry.SchemaResult, ID: "r1", ReceivedAt: time.Now().UTC(), ScoredAt: time.Now().UTC(),
		Source: "folder", Label: telemetry.LabelNormal, Score: 0.1, Threshold: 0.5})
	testenv.WaitFor(t, "result in /api/results", func() bool {
		c.Publish(tp.Result(), 1, false, res).WaitTimeout(5 * time.Second)
		_, body := get("/api/results?site=clinic-1")
		return strings.Contains(body, `"id":"r1"`)
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v after cancellation, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after cancellation")
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	err := serve(context.Background(), slog.New(slog.DiscardHandler), []string{"--http.listen", "not an address", "--store.dir", t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Fatalf("err %v, want one naming http.listen", err)
	}
}

// TestToken: `cxr-dashboard token NAME` prints a token once and the operators-file line that
// admits it, which the dashboard then loads.
func TestToken(t *testing.T) {
	var out strings.Builder
	if err := token(&out, []string{"it-desk"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 4 {
		t.Fatalf("output:\n%s", out.String())
	}
	tok, line := strings.TrimSpace(lines[1]), strings.TrimSpace(lines[3])
	if len(tok) != 43 || !strings.HasPrefix(line, "it-desk ") || strings.Contains(line, tok) {
		t.Fatalf("token %q, line %q: want a 43-character token and a line holding only its hash", tok, line)
	}
	path := filepath.Join(t.TempDir(), "operators")
	if err := os.WriteFile(path, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.LoadOperators(path); err != nil {
		t.Errorf("the printed line does not load: %v", err)
	}
	// Limited to some commands: the line says which, and loads so.
	out.Reset()
	if err := token(&out, []string{"front-desk", "ping"}); err != nil {
		t.Fatal(err)
	}
	line = strings.TrimSpace(strings.Split(out.String(), "\n")[3])
	if err := os.WriteFile(path, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ops, err := fleet.LoadOperators(path); err != nil || len(ops) != 1 || ops[0].May("set-threshold") || !ops[0].May("ping") {
		t.Errorf("line %q loads as %+v, %v; want front-desk limited to ping", line, ops, err)
	}
	for _, args := range [][]string{nil, {"a", "b"}, {"no spaces please"}, {"a", "ping", "c"}} {
		if err := token(io.Discard, args); err == nil {
			t.Errorf("token %q: no error", args)
		}
	}
}
