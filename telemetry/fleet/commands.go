package fleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Commands from the dashboard to devices (contract v1 …/cmd/<name>) are off unless operators
// are configured: anyone who can reach the dashboard can read it, but changing a device's
// operating point or model needs an operator's token, and every attempt is kept in an audit
// trail (store bucket "commands", GET /api/commands) and counted in /metrics.

// CommandOptions configure the command path.
type CommandOptions struct {
	// OperatorsFile lists who may send commands, one operator per line: a name, the sha256
	// (hex) of the operator's token, and optionally the commands that operator may send
	// (comma-separated, e.g. "ping,set-threshold"; omitted: every command), as `cxr-dashboard
	// token NAME [COMMANDS]` prints them; '#' starts a comment. Only hashes are stored, so the
	// file does not grant access if read. Empty (the default): commands are disabled and the
	// dashboard is read-only.
	OperatorsFile string
	// ReplyTimeout is how long a request waits for the device's reply (default 30s). A device
	// that is offline gets the command when it reconnects if its broker session keeps it.
	ReplyTimeout time.Duration
	// AuditMax bounds the audit trail; the oldest entries go first (default 10000).
	AuditMax int
}

// Errors of the command path, matched with errors.Is.
var (
	ErrCommandsDisabled = errors.New("commands are disabled (set commands.operators_file)")
	ErrUnauthorized     = errors.New("missing or unknown operator token")
	ErrForbidden        = errors.New("this operator may not send this command")
	ErrNoBroker         = errors.New("not connected to the broker")
)

// Outcomes of a command in the audit trail and in cxr_dashboard_commands_total.
const (
	OutcomeOK      = "ok"       // the device replied ok
	OutcomeRefused = "refused"  // the device replied with an error
	OutcomeNoReply = "no_reply" // sent, no reply within the timeout
	OutcomeNotSent = "not_sent" // the broker did not take it
	OutcomeInvalid = "invalid"  // refused by the dashboard before sending
	OutcomeDenied  = "denied"   // no or a wrong operator token (logged and counted, not stored)
	// OutcomeForbidden: a known operator sent a command the operators file does not give them
	// (stored, like every attempt by a known operator).
	OutcomeForbidden = "forbidden"
)

const (
	tokenBytes   = 32 // random bytes of a token NewOperatorToken makes
	minTokenLen  = 16 // shorter bearer strings are refused without hashing
	maxOperators = 1000
)

// Operator is one line of the operators file: who may send commands.
type Operator struct {
	Name string
	// Commands the operator may send; nil: every command. A desk that only checks whether
	// devices answer gets "ping"; changing an operating point or a model stays with the few
	// who are responsible for it.
	Commands []string
	hash     [sha256.Size]byte // of the operator's token
}

// May reports whether the operator may send the command.
func (o Operator) May(command string) bool {
	return o.Commands == nil || slices.Contains(o.Commands, command)
}

// knownCommand reports whether name is a command of the contract.
func knownCommand(name string) bool {
	switch name {
	case telemetry.CmdPing, telemetry.CmdSetThreshold, telemetry.CmdReloadModel:
		return true
	}
	return false
}

// errUnknownCommand is the answer to a command name outside the contract, from the API and
// from the operators file alike.
func errUnknownCommand(name string) error {
	return fmt.Errorf("unknown command %q (want %s, %s or %s)", name, telemetry.CmdPing, telemetry.CmdSetThreshold, telemetry.CmdReloadModel)
}

// parseCommands reads an operator's comma-separated command list.
func parseCommands(list string) ([]string, error) {
	var out []string
	for c := range strings.SplitSeq(list, ",") {
		switch {
		case !knownCommand(c):
			return nil, errUnknownCommand(c)
		case slices.Contains(out, c):
			return nil, fmt.Errorf("command %q listed twice", c)
		}
		out = append(out, c)
	}
	return out, nil
}

// LoadOperators reads an operators file (see CommandOptions.OperatorsFile). Every error wraps
// ErrConfig and names the line.
func LoadOperators(path string) ([]Operator, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: commands.operators_file: %w", ErrConfig, err)
	}
	defer f.Close()
	var ops []Operator
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		bad := func(why string) error {
			return fmt.Errorf("%w: %s line %d: %s (want: NAME SHA256-OF-TOKEN [COMMANDS], as `cxr-dashboard token NAME [COMMANDS]` prints)", ErrConfig, path, n, why)
		}
		if len(fields) != 2 && len(fields) != 3 {
			return nil, bad(fmt.Sprintf("%d fields", len(fields)))
		}
		if !telemetry.ValidID(fields[0]) {
			return nil, bad(fmt.Sprintf("name %q is not 1-64 characters of [a-zA-Z0-9_-]", fields[0]))
		}
		if seen[fields[0]] {
			return nil, bad(fmt.Sprintf("operator %q listed twice", fields[0]))
		}
		h, err := hex.DecodeString(fields[1])
		if err != nil || len(h) != sha256.Size {
			return nil, bad("the hash is not 64 hex digits")
		}
		if len(ops) == maxOperators {
			return nil, bad(fmt.Sprintf("more than %d operators", maxOperators))
		}
		op := Operator{Name: fields[0]}
		if len(fields) == 3 {
			if op.Commands, err = parseCommands(fields[2]); err != nil {
				return nil, bad(err.Error())
			}
		}
		seen[fields[0]] = true
		copy(op.hash[:], h)
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("%w: %s lists no operator (leave commands.operators_file empty to disable commands)", ErrConfig, path)
	}
	return ops, nil
}

// NewOperatorToken makes a random token for an operator and the line of the operators file
// that admits it, limited to commands if any are given (comma-separated, as in the file).
// The token is shown once; only its hash is kept.
func NewOperatorToken(name string, commands string) (token, line string, err error) {
	if !telemetry.ValidID(name) {
		return "", "", fmt.Errorf("operator name %q: want 1-64 characters of [a-zA-Z0-9_-]", name)
	}
	if commands != "" {
		if _, err := parseCommands(commands); err != nil {
			return "", "", fmt.Errorf("operator %s: %w", name, err)
		}
	}
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails (crypto/rand)
	token = base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(token))
	line = name + " " + hex.EncodeToString(h[:])
	if commands != "" {
		line += " " + commands
	}
	return token, line, nil
}

// authenticate returns the operator whose token the request carries (Authorization: Bearer).
// Every hash is compared in constant time, so timing does not tell which prefix matched.
func authenticate(ops []Operator, r *http.Request) (Operator, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || len(tok) < minTokenLen {
		return Operator{}, false
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	var found Operator
	for _, op := range ops {
		if subtle.ConstantTimeCompare(h[:], op.hash[:]) == 1 {
			found = op
		}
	}
	return found, found.Name != ""
}

// AuditEntry is one command attempt, as GET /api/commands returns it.
type AuditEntry struct {
	TS       time.Time        `json:"ts"`
	Operator string           `json:"operator,omitempty"` // empty when the token was refused
	Remote   string           `json:"remote"`
	Site     string           `json:"site"`
	Device   string           `json:"device"`
	Command  string           `json:"command"`
	ID       string           `json:"id,omitempty"`
	Args     json.RawMessage  `json:"args,omitempty"` // the command as sent
	Outcome  string           `json:"outcome"`
	Error    string           `json:"error,omitempty"`
	Reply    *telemetry.Reply `json:"reply,omitempty"`
}

// commander sends commands and matches the devices' replies to the requests waiting for them.
type commander struct {
	ops     []Operator
	timeout time.Duration

	mu      sync.Mutex
	client  mqtt.Client
	waiting map[string]chan telemetry.Reply // replyKey → the request waiting for it
}

func newCommander(o CommandOptions) (*commander, error) {
	c := &commander{timeout: o.ReplyTimeout, waiting: map[string]chan telemetry.Reply{}}
	if o.OperatorsFile != "" {
		ops, err := LoadOperators(o.OperatorsFile)
		if err != nil {
			return nil, err
		}
		c.ops = ops
	}
	return c, nil
}

func (c *commander) setClient(cl mqtt.Client) { c.mu.Lock(); c.client = cl; c.mu.Unlock() }

func replyKey(site, device, name, id string) string {
	return site + "/" + device + "/" + name + "/" + id
}

// deliver hands a reply (topic …/cmd/<name>/reply) to the request waiting for it, if any; it
// reports whether the topic was a reply at all.
func (c *commander) deliver(prefix, topic string, payload []byte) bool {
	if !strings.HasSuffix(topic, "/reply") {
		return false // every status, health and result message passes here: leave them at once
	}
	site, device, leaf, ok := telemetry.ParseTopic(prefix, topic)
	name, isReply := strings.CutSuffix(strings.TrimPrefix(leaf, "cmd/"), "/reply")
	if !ok || !isReply || !strings.HasPrefix(leaf, "cmd/") {
		return false
	}
	var r telemetry.Reply
	if json.Unmarshal(payload, &r) != nil || r.Schema != telemetry.SchemaReply || r.ID == "" {
		return true
	}
	c.mu.Lock()
	ch := c.waiting[replyKey(site, device, name, r.ID)]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- r: // buffered: the first copy wins, a redelivered one is dropped
		default:
		}
	}
	return true
}

// parseCommand checks a command as the device will, and gives it a fresh id.
func parseCommand(name string, body []byte) (payload []byte, id string, err error) {
	id = "dash-" + rand.Text()
	var v any
	switch name {
	case telemetry.CmdPing:
		var c telemetry.PingCommand
		c, err = telemetry.ParsePing(body)
		c.ID = id
		v = c
	case telemetry.CmdSetThreshold:
		var c telemetry.SetThresholdCommand
		c, err = telemetry.ParseSetThreshold(body)
		c.ID = id
		v = c
	case telemetry.CmdReloadModel:
		var c telemetry.ReloadModelCommand
		c, err = telemetry.ParseReloadModel(body)
		c.ID = id
		v = c
	default:
		return nil, "", errUnknownCommand(name)
	}
	if err != nil {
		return nil, "", err
	}
	payload, err = json.Marshal(v)
	return payload, id, err
}

// send publishes a command and waits for its reply; it fills e's id, args, outcome, error and
// reply.
func (c *commander) send(ctx context.Context, topics telemetry.Topics, name string, body []byte, e *AuditEntry) {
	payload, id, err := parseCommand(name, body)
	if err != nil {
		e.Outcome, e.Error = OutcomeInvalid, err.Error()
		return
	}
	e.ID, e.Args = id, payload
	c.mu.Lock()
	cl := c.client
	if cl == nil || !cl.IsConnectionOpen() {
		c.mu.Unlock()
		e.Outcome, e.Error = OutcomeNotSent, ErrNoBroker.Error()
		return
	}
	key := replyKey(topics.Site, topics.Device, name, id)
	ch := make(chan telemetry.Reply, 1)
	c.waiting[key] = ch
	c.mu.Unlock()
	defer func() { c.mu.Lock(); delete(c.waiting, key); c.mu.Unlock() }()

	wait, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	tok := cl.Publish(topics.Command(name), 1, false, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			e.Outcome, e.Error = OutcomeNotSent, err.Error()
			return
		}
	case <-wait.Done():
		e.Outcome, e.Error = OutcomeNotSent, "the broker did not acknowledge the command in time"
		return
	}
	select {
	case r := <-ch:
		e.Reply = &r
		if e.Outcome = OutcomeOK; !r.OK {
			e.Outcome, e.Error = OutcomeRefused, r.Error
		}
	case <-wait.Done():
		e.Outcome = OutcomeNoReply
		e.Error = fmt.Sprintf("no reply within %v; a device that is offline gets the command when it reconnects if its broker session keeps it", c.timeout)
	}
}

// apiCommand serves POST /api/devices/{site}/{id}/cmd/{name}. The body is the command's JSON
// (its id is assigned here); the answer is the attempt's AuditEntry, with the device's reply
// if one came. Status codes: 200 with the device's reply (ok or refused), 202 when
// no reply came in time, 400 invalid, 401 no or wrong token, 403 commands disabled or not
// given to this operator, 404 unknown device, 503 broker unreachable.
func (s *Service) apiCommand(w http.ResponseWriter, r *http.Request) {
	site, dev, name := r.PathValue("site"), r.PathValue("id"), r.PathValue("name")
	e := AuditEntry{TS: s.opts.Now().UTC(), Remote: r.RemoteAddr, Site: site, Device: dev, Command: name}
	code := http.StatusOK
	if len(s.cmd.ops) == 0 {
		writeJSON(w, http.StatusForbidden, apiError{Error: ErrCommandsDisabled.Error()})
		return
	}
	topics, err := telemetry.NewTopics(s.opts.MQTT.TopicPrefix, site, dev)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	op, ok := authenticate(s.cmd.ops, r)
	e.Operator = op.Name
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, telemetry.MaxCommandBytes))
	switch _, known := s.state.Device(site, dev); {
	case !ok:
		code, e.Outcome, e.Error = http.StatusUnauthorized, OutcomeDenied, ErrUnauthorized.Error()
		w.Header().Set("WWW-Authenticate", `Bearer realm="cxr-dashboard"`)
	case knownCommand(name) && !op.May(name):
		code, e.Outcome = http.StatusForbidden, OutcomeForbidden
		e.Error = fmt.Sprintf("%v: %s may send only %s", ErrForbidden, op.Name, strings.Join(op.Commands, ", "))
	case !known:
		code, e.Outcome, e.Error = http.StatusNotFound, OutcomeInvalid, fmt.Sprintf("device %s/%s: not known to this dashboard", site, dev)
	case readErr != nil:
		code, e.Outcome, e.Error = http.StatusBadRequest, OutcomeInvalid, "body: "+readErr.Error()
	default:
		s.cmd.send(r.Context(), topics, name, bytes.TrimSpace(body), &e)
		switch e.Outcome {
		case OutcomeInvalid:
			code = http.StatusBadRequest
		case OutcomeNotSent:
			code = http.StatusServiceUnavailable
		case OutcomeNoReply:
			code = http.StatusAccepted
		}
	}
	s.audit(e)
	writeJSON(w, code, e)
}

// audit records a command attempt in the log and the metrics, and, if an operator sent it,
// in the store. Refused tokens are not stored, so nobody can flush the trail without one; their
// log lines are rate-limited.
func (s *Service) audit(e AuditEntry) {
	s.stats.commands.WithLabelValues(e.Command, e.Outcome).Inc()
	args := []any{"operator", e.Operator, "remote", e.Remote, "site", e.Site, "device", e.Device, "command", e.Command,
		"id", e.ID, "args", string(e.Args), "outcome", e.Outcome, "err", e.Error}
	if e.Outcome == OutcomeDenied {
		if ok, quiet := s.rlog.allow("command_denied", s.opts.Now()); ok {
			s.log.Warn("command refused: operator token", append(args, "refused_since_last_log", quiet)...)
		}
		return
	}
	s.log.Info("command", args...)
	if err := s.store.addAudit(e, s.opts.Commands.AuditMax); err != nil {
		s.log.Error("audit trail", "err", err)
	}
	s.hub.publish(evCommands)
}

// apiCommands serves GET /api/commands?site=&device=&limit= (newest first).
func (s *Service) apiCommands(w http.ResponseWriter, r *http.Request) {
	q, err := parseResultQuery(r)
	if err == nil && q.Label != "" {
		err = errors.New("label: not a filter of commands")
	}
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	out, err := s.store.audits(q.Site, q.Device, q.Limit)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, out)
}
