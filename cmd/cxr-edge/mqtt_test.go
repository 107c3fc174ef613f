package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// subscriber collects the messages of one topic filter.
type subscriber struct {
	mu   sync.Mutex
	msgs map[string][][]byte // topic → payloads
}

func subscribe(t *testing.T, brokerURL, filter string) *subscriber {
	t.Helper()
	s := &subscriber{msgs: map[string][][]byte{}}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).SetClientID(fmt.Sprintf("test-%d", time.Now().UnixNano())).SetConnectRetry(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", brokerURL, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs[m.Topic()] = append(s.msgs[m.Topic()], bytes.Clone(m.Payload()))
		s.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return s
}

func (s *subscriber) last(topic string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.msgs[topic]
	if len(m) == 0 {
		return nil
	}
	return m[len(m)-1]
}

func (s *subscriber) count(topic string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs[topic])
}

func postImage(t *testing.T, url string, class, name string) telemetry.Result {
	t.Helper()
	img, err := os.ReadFile(testenv.SharedPath(t, "data", "fullres", class, name))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+"/v1/studies", "image/jpeg", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r telemetry.Result
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST: %d %v", resp.StatusCode, err)
	}
	return r
}

// With a real Mosquitto broker: status online (retained), health, each result once on
// …/result, and status offline after SIGTERM.
func TestDaemonPublishesToMosquitto(t *testing.T) {
	b := testenv.Mosquitto(t, testenv.BrokerOptions{})
	sub := subscribe(t, b.URL(), "cxr/ward-3/cart-1/#")
	state := t.TempDir()
	d := startDaemon(t, []string{
		"CXR_MODEL_PATH=" + model(t),
		"CXR_STORE_DIR=" + filepath.Join(state, "store"),
		"CXR_MQTT_BROKER=" + b.URL(),
		"CXR_DEVICE_SITE=ward-3", "CXR_DEVICE_ID=cart-1",
		"CXR_MQTT_HEALTH_INTERVAL=1s",
		"CXR_INDICATOR_KIND=none",
	})
	topics, _ := telemetry.NewTopics("cxr", "ward-3", "cart-1")
	res := postImage(t, d.url, "PNEUMONIA", "person515_bacteria_2187.jpeg")
	waitFor(t, "the result on MQTT", func() bool { return sub.count(topics.Result()) >= 1 })
	var got telemetry.Result
	if err := json.Unmarshal(sub.last(topics.Result()), &got); err != nil || got.ID != res.ID || got.Score != res.Score || got.Schema != telemetry.SchemaResult {
		t.Errorf("published %s, posted %+v", sub.last(topics.Result()), res)
	}
	waitFor(t, "health", func() bool { return sub.count(topics.Health()) >= 1 })
	var h telemetry.Health
	// Outbox in the wait, not the check below: the subscriber can see the result before the
	// daemon has its PUBACK, and a health report in between rightly still counts it.
	waitFor(t, "health counting the result, with an empty outbox", func() bool {
		return json.Unmarshal(sub.last(topics.Health()), &h) == nil && h.Scored == 1 && h.Outbox == 0
	})
	if h.Schema != telemetry.SchemaHealth || h.InferMsP50 <= 0 || h.DiskFree == 0 || h.MemTotal == 0 || h.UptimeS <= 0 {
		t.Errorf("health %+v", h)
	}
	var st telemetry.Status
	if err := json.Unmarshal(sub.last(topics.Status()), &st); err != nil || st.State != telemetry.StateOnline || st.Model.Name != "vww_96_int8" {
		t.Errorf("status %s", sub.last(topics.Status()))
	}
	d.stop(t)
	waitFor(t, "offline status", func() bool {
		return json.Unmarshal(sub.last(topics.Status()), &st) == nil && st.State == telemetry.StateOffline
	})
	if n := sub.count(topics.Result()); n != 1 {
		t.Errorf("result published %d times", n)
	}
}

// embeddedBrokerRE finds the embedded broker's bound address in the daemon's log.
var embeddedBrokerRE = logAddrRE("embedded MQTT broker listening")

// mqtt.embedded runs a broker inside the daemon for demos.
// It listens on port 0 and logs the port the kernel chose.
func TestDaemonEmbeddedBroker(t *testing.T) {
	state := t.TempDir()
	d := startDaemon(t, []string{
		"CXR_MODEL_PATH=" + model(t),
		"CXR_STORE_DIR=" + filepath.Join(state, "store"),
		"CXR_MQTT_EMBEDDED=true",
		"CXR_MQTT_EMBEDDED_LISTEN=127.0.0.1:0",
		"CXR_DEVICE_SITE=demo", "CXR_DEVICE_ID=dev",
		"CXR_INDICATOR_KIND=none",
	})
	m := embeddedBrokerRE.FindStringSubmatch(d.logText())
	if m == nil || strings.HasSuffix(m[1], ":0") {
		t.Fatalf("no bound address of the embedded broker in the log:\n%s", d.logText())
	}
	sub := subscribe(t, "tcp://"+m[1], "cxr/demo/dev/#")
	topics, _ := telemetry.NewTopics("cxr", "demo", "dev")
	res := postImage(t, d.url, "NORMAL", "IM-0636-0001.jpeg")
	waitFor(t, "the result on the embedded broker", func() bool { return sub.count(topics.Result()) >= 1 })
	var got telemetry.Result
	if err := json.Unmarshal(sub.last(topics.Result()), &got); err != nil || got.ID != res.ID {
		t.Errorf("published %s", sub.last(topics.Result()))
	}
	d.stop(t)
}

// reload-model over MQTT switches the model, and the choice survives a restart.
func TestDaemonReloadModel(t *testing.T) {
	b := testenv.Mosquitto(t, testenv.BrokerOptions{})
	sub := subscribe(t, b.URL(), "cxr/s/d/#")
	state := t.TempDir()
	env := []string{
		"CXR_MODEL_PATH=" + model(t),
		"CXR_STORE_DIR=" + filepath.Join(state, "store"),
		"CXR_MQTT_BROKER=" + b.URL(),
		"CXR_DEVICE_SITE=s", "CXR_DEVICE_ID=d",
		"CXR_INDICATOR_KIND=none",
	}
	d := startDaemon(t, env)
	topics, _ := telemetry.NewTopics("cxr", "s", "d")
	waitFor(t, "online", func() bool { return sub.count(topics.Status()) >= 1 })

	newModel := testenv.SharedPath(t, "models", "person_detect_int8_qdim0_DERIVED.tflite")
	data, err := os.ReadFile(newModel)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	pubc := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("test-cmd"))
	if tok := pubc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pubc.Disconnect(100)
	// send publishes a command and returns the reply with its id. Until the first reply of
	// the test the command is sent again every 2 s: the daemon publishes "online" before its
	// command subscription is in place, and a command sent in between is dropped by the broker.
	send := func(cmd, id, payload string) telemetry.Reply {
		t.Helper()
		replies := topics.CommandReply(cmd)
		publish := func() {
			if tok := pubc.Publish(topics.Command(cmd), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
		}
		publish()
		sent := time.Now()
		var r telemetry.Reply
		waitFor(t, "the reply to "+id, func() bool {
			sub.mu.Lock()
			msgs := slices.Clone(sub.msgs[replies])
			sub.mu.Unlock()
			for _, m := range msgs {
				var got telemetry.Reply
				if json.Unmarshal(m, &got) == nil && got.ID == id {
					r = got
					return true
				}
			}
			if len(msgs) == 0 && time.Since(sent) > 2*time.Second {
				publish()
				sent = time.Now()
			}
			return false
		})
		return r
	}
	// A wrong pin is refused and changes nothing.
	if r := send(telemetry.CmdReloadModel, "bad", fmt.Sprintf(`{"id":"bad","path":%q,"sha256":"%064d"}`, newModel, 0)); r.OK || r.ID != "bad" {
		t.Errorf("wrong sha256 accepted: %+v", r)
	}
	if r := postImage(t, d.url, "NORMAL", "NORMAL2-IM-0816-0001.jpeg"); r.Model.Name != "vww_96_int8" {
		t.Errorf("model changed by a refused reload: %+v", r.Model)
	}
	if r := send(telemetry.CmdReloadModel, "good", fmt.Sprintf(`{"id":"good","path":%q,"sha256":"%s"}`, newModel, hex.EncodeToString(sum[:]))); !r.OK {
		t.Fatalf("reload refused: %+v", r)
	}
	if r := postImage(t, d.url, "NORMAL", "NORMAL2-IM-0826-0001.jpeg"); r.Model.Name != "person_detect_int8_qdim0_DERIVED" {
		t.Errorf("after reload: %+v", r.Model)
	}
	// The site's operating point for the running model, set remotely: refused for another
	// model, applied to the next result, kept across a restart.
	if r := send(telemetry.CmdSetThreshold, "thr-other", fmt.Sprintf(`{"id":"thr-other","threshold":0.37,"model_sha256":"%064d"}`, 0)); r.OK {
		t.Errorf("threshold for another model accepted: %+v", r)
	}
	r := send(telemetry.CmdSetThreshold, "thr", fmt.Sprintf(`{"id":"thr","threshold":0.37,"model_sha256":"%s"}`, hex.EncodeToString(sum[:])))
	var op telemetry.OperatingPoint
	if detail, _ := json.Marshal(r.Detail); !r.OK || json.Unmarshal(detail, &op) != nil || op.Threshold != 0.37 ||
		op.Source != telemetry.ThresholdSite || op.Model.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("set-threshold: %+v", r)
	}
	if r := postImage(t, d.url, "NORMAL", "NORMAL2-IM-1024-0001.jpeg"); r.Threshold != 0.37 {
		t.Errorf("result after set-threshold at %v, want 0.37", r.Threshold)
	}
	d.stop(t)
	d2 := startDaemon(t, env)
	if r := postImage(t, d2.url, "NORMAL", "NORMAL2-IM-0974-0001.jpeg"); r.Model.Name != "person_detect_int8_qdim0_DERIVED" || r.Model.SHA256 != hex.EncodeToString(sum[:]) || r.Threshold != 0.37 {
		t.Errorf("after restart: %+v at %v, want the reloaded model at the site's 0.37", r.Model, r.Threshold)
	}
	d2.stop(t)
}
