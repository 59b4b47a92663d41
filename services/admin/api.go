package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gatehouse/adminauth"
	"gatehouse/command"
	"gatehouse/config"
	"gatehouse/control"
	"gatehouse/dnsclient"
	"gatehouse/init/logring"
	"gatehouse/layout"
	"gatehouse/linuxfw"
	"gatehouse/paths"
	"gatehouse/setup"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

// Prefix is where the API lives on both ports.
const Prefix = "/api/v1"

// route is one entry of the API: the table the server, the OpenAPI
// document's test and the docs read.
type route struct {
	Method, Path string // Path below Prefix, with {name} wildcards
	Role         string // what the caller needs: read or admin
	Summary      string
	h            func(s *server, w http.ResponseWriter, r *http.Request, c caller)
}

// routes is the API, in the order the OpenAPI document lists it.
func routeTable() []route {
	read, admin := adminauth.RoleRead, adminauth.RoleAdmin
	return []route{
		{"GET", "/session", read, "the web console's session: who, role and CSRF token", (*server).getSession},
		{"DELETE", "/session", read, "log the web console's session out", (*server).deleteSession},
		{"GET", "/status", read, "the appliance's status, as `gatehouse status --format json`", cmdJSON("status", "--format", "json")},
		{"GET", "/services", read, "every service's state", (*server).services},
		{"GET", "/services/{name}/logs", read, "a service's recent output (?lines=N), or its live feed (?follow=1, server-sent events)", (*server).logs},
		{"GET", "/config", admin, "the running config's text (admin only: it names secrets' hashes and communities), and when an applied one is rolled back unless confirmed", (*server).getConfig},
		{"POST", "/config/validate", read, "validate a config (YAML body): every problem with line, column and field", (*server).validateConfig},
		{"PUT", "/config", admin, "validate a config (YAML body) and keep it as the candidate to apply", (*server).putConfig},
		{"POST", "/config/apply", admin, "apply the candidate; rolled back unless confirmed within ?confirm_within= (default 120s; 0s: no rollback)", (*server).applyConfig},
		{"POST", "/config/confirm", admin, "keep the applied config", (*server).confirmConfig},
		{"GET", "/queue", read, "the mail queue, as `gatehouse queue list --format json`", cmdJSON("queue", "list", "--format", "json")},
		{"POST", "/queue/flush", admin, "retry every deferred message now", cmdJSON("queue", "flush", "--format", "json")},
		{"GET", "/queue/{id}", read, "one queued message", queueVerb("show")},
		{"POST", "/queue/{id}/hold", admin, "put a message on hold", queueVerb("hold")},
		{"POST", "/queue/{id}/release", admin, "release a held message", queueVerb("release")},
		{"DELETE", "/queue/{id}", admin, "delete a message", queueVerb("delete")},
		{"GET", "/fetch", read, "the collector's accounts, as `gatehouse fetch status --format json`", cmdJSON("fetch", "status", "--format", "json")},
		{"POST", "/fetch/poll", admin, "poll every account now, or ?account=NAME", (*server).fetchPoll},
		{"GET", "/paths", read, "the communication-path table of the running config", (*server).pathTable},
		{"POST", "/paths/check", admin, "test every outbound path now", (*server).pathCheck},
		{"GET", "/firewall", read, "the firewall's status and the rules the kernel enforces", (*server).firewall},
		{"GET", "/firewall/bans", read, "sources banned after failed logins (SSH, web console and API)", (*server).bansList},
		{"DELETE", "/firewall/bans/{address}", admin, "lift a ban of the web console and the API (the SSH shell's lapse after ssh.ban.for)", (*server).unban},
		{"GET", "/ntp", read, "time synchronisation", detailOf("ntp")},
		{"GET", "/dns", read, "the resolver", detailOf("dns")},
		{"GET", "/network", read, "interfaces, addresses, routes and DHCP leases", detailOf("network")},
		{"GET", "/cluster", read, "the cluster's nodes, as `gatehouse cluster status --format json`", cmdJSON("cluster", "status", "--format", "json")},
		{"GET", "/snmp", read, "the SNMP agent", detailOf("snmp")},
		{"GET", "/nrpe", read, "the NRPE server", detailOf("nrpe")},
		{"GET", "/syslog", read, "log forwarding", detailOf("syslog")},
		{"PUT", "/update", admin, "install a signed firmware bundle (the body) in the other slot and arm its trial boot; ?reboot=1 reboots into it, ?allow_downgrade=1 takes an older one", (*server).putUpdate},
		{"POST", "/poweroff", admin, "stop every service and power off", cmdJSON("poweroff")},
		{"POST", "/reboot", admin, "stop every service and reboot", cmdJSON("reboot")},
		{"POST", "/setup", admin, "the config the first-boot setup's answers (JSON) make, for review in the editor; nothing is applied", (*server).setupRender},
		{"GET", "/openapi.json", read, "this API's OpenAPI 3 document", (*server).openAPI},
	}
}

// routes is the API's handler: authentication, the allow list's roles,
// the route's role, and a log line per request.
func (s *server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range routeTable() {
		mux.HandleFunc(rt.Method+" "+Prefix+rt.Path, func(w http.ResponseWriter, r *http.Request) {
			c := r.Context().Value(callerKey{}).(caller)
			if rt.Role == adminauth.RoleAdmin && c.id.Role != adminauth.RoleAdmin {
				writeError(w, http.StatusForbidden, "this needs the admin role; "+c.id.Name+" has "+c.id.Role, nil)
				return
			}
			rt.h(s, w, r, c)
		})
	}
	return mux
}

type callerKey struct{}

// apiHandler serves the API; on the web console's port (web) sessions
// count and logging in is possible.
func (s *server) apiHandler(api bool) http.Handler {
	web := !api
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		w = rec
		securityHeaders(w)
		var c caller
		defer func() {
			s.log.Info("admin: request", "source", remoteAddr(addrOf(r.RemoteAddr)), "name", c.id.Name, "via", c.id.Via,
				"method", r.Method, "path", r.URL.Path, "status", rec.status, "ms", time.Since(start).Milliseconds())
		}()
		if !strings.HasPrefix(r.URL.Path, Prefix+"/") {
			writeError(w, http.StatusNotFound, "not found: the API is under "+Prefix, nil)
			return
		}
		// A connection accepted before its source was banned may still
		// be open (keep-alive): the ban holds on every request.
		if until, banned := s.bans.BannedUntil(remoteAddr(addrOf(r.RemoteAddr))); banned {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusForbidden, "banned until "+until.UTC().Format(time.RFC3339)+" after repeated failed logins", nil)
			return
		}
		if web && r.URL.Path == Prefix+"/session" && r.Method == http.MethodPost {
			s.login(w, r)
			return
		}
		c, ae := s.identify(r, web)
		if ae != nil {
			s.refuse(w, c, ae, api)
			return
		}
		if !s.current().web.Allowed(c.src) && c.id.Role == adminauth.RoleAdmin {
			// A monitoring host that is not on admin.allow reads only.
			c.id.Role = adminauth.RoleRead
		}
		s.api.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush lets the log feed through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func addrOf(s string) net.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return &net.TCPAddr{}
	}
	return net.TCPAddrFromAddrPort(ap)
}

// securityHeaders go on every answer of both ports.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Strict-Transport-Security", "max-age=31536000")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", csp)
}

// csp allows the console's own files and nothing else: no inline script,
// no other origin, no framing.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Problem is one finding in a config, as the API answers it.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// ErrorBody is every error's answer.
type ErrorBody struct {
	Error    string    `json:"error"`
	Problems []Problem `json:"problems,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string, problems []Problem) {
	writeJSON(w, code, ErrorBody{Error: msg, Problems: problems})
}

func errBadJSON(err error) error {
	if err == nil {
		return errors.New("bad JSON: one object expected")
	}
	return fmt.Errorf("bad JSON: %w", err)
}

// failure answers an error of the layers below: a command line refused
// (400), a message not in the queue (404), a service not running (503),
// a change refused (409).
func failure(w http.ResponseWriter, err error) {
	var ee *command.ExitError
	var de *sockrpc.DialError
	var ae *sockrpc.AnswerError
	switch {
	case errors.As(err, &ee) && ee.Code == 2:
		writeError(w, http.StatusBadRequest, err.Error(), nil)
	case errors.As(err, &de), strings.Contains(err.Error(), "is not running"):
		writeError(w, http.StatusServiceUnavailable, err.Error(), nil)
	case errors.As(err, &ae) && strings.Contains(err.Error(), "no such message"):
		writeError(w, http.StatusNotFound, err.Error(), nil)
	default:
		writeError(w, http.StatusConflict, err.Error(), nil)
	}
}

// env is the command table's environment acting on this instance.
func (s *server) env(out *bytes.Buffer) *command.Env {
	p := s.o.Paths
	return &command.Env{Appliance: command.Socket(p.ControlSocket()), Paths: p, Out: out, FlagOutput: out}
}

// run runs a command of the table, as the CLI and the shells do, and
// returns what it printed.
func (s *server) run(args ...string) ([]byte, error) {
	var out bytes.Buffer
	c, ok := command.Lookup(args[0])
	if !ok {
		return nil, fmt.Errorf("no command %q", args[0])
	}
	err := c.Run(s.env(&out), args[1:])
	var ee *command.ExitError
	if errors.As(err, &ee) && ee.Err == nil {
		err = &command.ExitError{Code: ee.Code, Err: errors.New(strings.TrimSpace(out.String()))}
	}
	return out.Bytes(), err
}

// cmdJSON answers with a command's JSON output; a command that prints
// text only (poweroff) is answered with {"done": "its words"}.
func cmdJSON(args ...string) func(*server, http.ResponseWriter, *http.Request, caller) {
	return func(s *server, w http.ResponseWriter, r *http.Request, c caller) {
		s.answerCommand(w, args...)
	}
}

func (s *server) answerCommand(w http.ResponseWriter, args ...string) {
	out, err := s.run(args...)
	if err != nil {
		failure(w, err)
		return
	}
	if !json.Valid(out) {
		writeJSON(w, http.StatusOK, map[string]string{"done": strings.TrimSpace(string(out))})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

func queueVerb(verb string) func(*server, http.ResponseWriter, *http.Request, caller) {
	return func(s *server, w http.ResponseWriter, r *http.Request, c caller) {
		id := r.PathValue("id")
		if id == "" || strings.HasPrefix(id, "-") || len(id) > 64 {
			writeError(w, http.StatusBadRequest, "bad queue id", nil)
			return
		}
		s.answerCommand(w, "queue", verb, id, "--format", "json")
	}
}

// detailOf answers a service's own status document.
func detailOf(name string) func(*server, http.ResponseWriter, *http.Request, caller) {
	return func(s *server, w http.ResponseWriter, r *http.Request, c caller) {
		st := control.Client{Socket: s.o.Paths.ControlSocket()}.Status()
		for _, svc := range st.Services {
			if svc.Name == name && len(svc.Detail) > 0 {
				w.Header().Set("Content-Type", "application/json")
				w.Write(svc.Detail)
				return
			}
		}
		writeError(w, http.StatusNotFound, "the "+name+" service is not running or has not reported", nil)
	}
}

func (s *server) getSession(w http.ResponseWriter, r *http.Request, c caller) {
	if c.session == nil {
		writeJSON(w, http.StatusOK, map[string]string{"name": c.id.Name, "role": c.id.Role, "via": c.id.Via})
		return
	}
	writeJSON(w, http.StatusOK, sessionInfo(c.session))
}

func (s *server) deleteSession(w http.ResponseWriter, r *http.Request, c caller) { s.logout(w, r, c) }

func (s *server) services(w http.ResponseWriter, r *http.Request, c caller) {
	st := control.Client{Socket: s.o.Paths.ControlSocket()}.Status()
	if st.Mode == "unreachable" {
		writeError(w, http.StatusServiceUnavailable, st.Emergency, nil)
		return
	}
	writeJSON(w, http.StatusOK, st.Services)
}

// logs answers a service's last lines, or follows its feed as
// server-sent events (the event id is the record's sequence number, so
// that a browser resumes with Last-Event-ID).
func (s *server) logs(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("name")
	q := r.URL.Query()
	if q.Get("follow") != "1" {
		n := 200
		if v := q.Get("lines"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 100000 {
				writeError(w, http.StatusBadRequest, "lines: a number from 1 to 100000", nil)
				return
			}
		}
		lines, err := control.Client{Socket: s.o.Paths.ControlSocket()}.Logs(name, n)
		if err != nil {
			writeError(w, http.StatusNotFound, err.Error(), nil)
			return
		}
		if lines == nil {
			lines = []string{}
		}
		writeJSON(w, http.StatusOK, map[string][]string{"lines": lines})
		return
	}
	var since uint64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		since, _ = strconv.ParseUint(v, 10, 64)
	}
	fl, _ := w.(http.Flusher)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	if fl != nil {
		fl.Flush()
	}
	err := control.Follow(r.Context(), s.o.Paths.ControlSocket(), since, func(rec logring.Record) error {
		if name != "all" && rec.Service != name {
			return nil
		}
		b, _ := json.Marshal(rec)
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second)) // a reader that stopped reading
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", rec.Seq, b); err != nil {
			return err
		}
		if fl != nil {
			fl.Flush()
		}
		return nil
	})
	if err != nil && r.Context().Err() == nil {
		fmt.Fprintf(w, "event: error\ndata: %q\n\n", err.Error())
	}
}

// runningConfig is the config PID 1 validated and the services use.
func (s *server) runningConfig() (*config.Config, error) {
	cfg, _, err := config.Load(s.o.Paths.Config())
	return cfg, err
}

func (s *server) getConfig(w http.ResponseWriter, r *http.Request, c caller) {
	text, err := os.ReadFile(s.o.Paths.Config())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error(), nil)
		return
	}
	st := control.Client{Socket: s.o.Paths.ControlSocket()}.Status()
	writeJSON(w, http.StatusOK, struct {
		File      string     `json:"file"`
		YAML      string     `json:"yaml"`
		ConfirmBy *time.Time `json:"confirm_by,omitempty"`
	}{st.Config, string(text), st.ConfirmBy})
}

// configName is what problems in a config sent to the API are reported
// against.
const configName = "gatehouse.yaml"

// checkConfig validates a YAML body; it answers 400 with every problem
// and returns nil when it is invalid.
func checkConfig(w http.ResponseWriter, r *http.Request) ([]byte, []Problem) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return nil, nil
	}
	_, warns, err := config.Parse(configName, body)
	if err != nil {
		var errs config.Errors
		if !errors.As(err, &errs) {
			writeError(w, http.StatusBadRequest, err.Error(), nil)
			return nil, nil
		}
		writeError(w, http.StatusBadRequest, "config invalid", problems(errs))
		return nil, nil
	}
	return body, problems(warns)
}

func problems(errs []*config.Error) []Problem {
	out := []Problem{}
	for _, e := range errs {
		out = append(out, Problem{File: e.File, Line: e.Line, Column: e.Column, Field: e.Path, Message: e.Msg})
	}
	return out
}

func readBody(r *http.Request) ([]byte, error) {
	var b bytes.Buffer
	if _, err := b.ReadFrom(http.MaxBytesReader(nil, r.Body, maxBody)); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return b.Bytes(), nil
}

func (s *server) validateConfig(w http.ResponseWriter, r *http.Request, c caller) {
	if body, warns := checkConfig(w, r); body != nil {
		writeJSON(w, http.StatusOK, map[string]any{"valid": true, "warnings": warns})
	}
}

// candidate is where PUT /config keeps the config to apply.
func (s *server) candidate() string { return filepath.Join(s.o.Paths.Admin(), "candidate.yaml") }

func (s *server) putConfig(w http.ResponseWriter, r *http.Request, c caller) {
	body, warns := checkConfig(w, r)
	if body == nil {
		return
	}
	if err := writeFile(s.candidate(), body); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error(), nil)
		return
	}
	s.log.Info("admin: candidate config stored", "name", c.id.Name)
	writeJSON(w, http.StatusOK, map[string]any{"valid": true, "stored": true, "warnings": warns})
}

func (s *server) applyConfig(w http.ResponseWriter, r *http.Request, c caller) {
	within := 120 * time.Second
	if v := r.URL.Query().Get("confirm_within"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Hour {
			writeError(w, http.StatusBadRequest, "confirm_within: a duration from 0s to 1h", nil)
			return
		}
		within = d
	}
	if _, err := os.Stat(s.candidate()); err != nil {
		writeError(w, http.StatusConflict, "no candidate config: PUT /api/v1/config first", nil)
		return
	}
	if err := (control.Client{Socket: s.o.Paths.ControlSocket()}).Apply(s.candidate(), within); err != nil {
		writeError(w, http.StatusConflict, "apply refused; the running config is unchanged: "+err.Error(), nil)
		return
	}
	os.Remove(s.candidate())
	s.log.Warn("admin: config applied", "name", c.id.Name, "confirm_within", within)
	st := control.Client{Socket: s.o.Paths.ControlSocket()}.Status()
	writeJSON(w, http.StatusOK, struct {
		Applied   bool       `json:"applied"`
		ConfirmBy *time.Time `json:"confirm_by,omitempty"`
	}{true, st.ConfirmBy})
}

func (s *server) confirmConfig(w http.ResponseWriter, r *http.Request, c caller) {
	if err := (control.Client{Socket: s.o.Paths.ControlSocket()}).Confirm(); err != nil {
		writeError(w, http.StatusConflict, err.Error(), nil)
		return
	}
	s.log.Info("admin: config confirmed", "name", c.id.Name)
	writeJSON(w, http.StatusOK, map[string]bool{"confirmed": true})
}

func (s *server) fetchPoll(w http.ResponseWriter, r *http.Request, c caller) {
	args := []string{"fetch", "now"}
	if a := r.URL.Query().Get("account"); a != "" {
		if strings.HasPrefix(a, "-") {
			writeError(w, http.StatusBadRequest, "bad account name", nil)
			return
		}
		args = append(args, a)
	}
	s.answerCommand(w, args...)
}

func (s *server) pathTable(w http.ResponseWriter, r *http.Request, c caller) {
	cfg, err := s.runningConfig()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error(), nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	paths.Write(w, paths.Table(cfg), "json")
}

func (s *server) pathCheck(w http.ResponseWriter, r *http.Request, c caller) {
	cfg, err := s.runningConfig()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error(), nil)
		return
	}
	res := paths.Check(r.Context(), paths.Table(cfg), 3*time.Second, dnsclient.New(s.o.Paths.ResolvConf()))
	w.Header().Set("Content-Type", "application/json")
	paths.WriteResults(w, res, "json")
}

func (s *server) firewall(w http.ResponseWriter, r *http.Request, c caller) {
	st := control.Client{Socket: s.o.Paths.ControlSocket()}.Status()
	f, ok, _ := status.Detail[status.Firewall](st.Services, "firewall")
	if !ok {
		writeError(w, http.StatusNotFound, "no firewall is running (host mode runs it only with --firewall)", nil)
		return
	}
	var rules status.FirewallRules
	installed := ""
	if err := sockrpc.Call(s.o.Paths.FirewallSocket(), 30*time.Second, status.FirewallRequest{Verb: "show"}, &rules); err != nil {
		installed = "cannot read back: " + err.Error()
	} else {
		installed = rules.Rules
	}
	writeJSON(w, http.StatusOK, struct {
		Status    status.Firewall `json:"status"`
		Installed string          `json:"installed"`
	}{f, installed})
}

// Ban is a source banned after failed logins.
type Ban struct {
	Set        string  `json:"set"`
	Address    string  `json:"address"`
	ExpiresInS float64 `json:"expires_in_s"`
}

// banSets are the ban sets the firewall holds.
var banSets = []string{layout.SSHBanSet, layout.AdminBanSet}

func (s *server) bansList(w http.ResponseWriter, r *http.Request, c caller) {
	out := []Ban{}
	seen := map[netip.Addr]bool{}
	for _, set := range banSets {
		bans, err := (linuxfw.NFT{}).Bans(set)
		if err != nil {
			continue // the iptables backend: its recent lists say no expiry
		}
		for a, left := range bans {
			out = append(out, Ban{Set: set, Address: a.String(), ExpiresInS: left.Seconds()})
			if set == layout.AdminBanSet {
				seen[a] = true
			}
		}
	}
	for a, left := range s.bans.Bans() { // what this service enforces itself
		if !seen[a] {
			out = append(out, Ban{Set: layout.AdminBanSet, Address: a.String(), ExpiresInS: left.Seconds()})
		}
	}
	slices.SortFunc(out, func(a, b Ban) int { return strings.Compare(a.Set+a.Address, b.Set+b.Address) })
	writeJSON(w, http.StatusOK, out)
}

func (s *server) unban(w http.ResponseWriter, r *http.Request, c caller) {
	a, err := netip.ParseAddr(r.PathValue("address"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "not an IP address", nil)
		return
	}
	a = a.Unmap()
	// Only the admin service's own bans: the SSH shell keeps its bans in
	// its own table and would put one lifted in the kernel back.
	inService := s.bans.Lift(a)
	inKernel := false
	if bans, err := (linuxfw.NFT{}).Bans(layout.AdminBanSet); err == nil {
		_, inKernel = bans[a]
	}
	if !inService && !inKernel {
		if bans, err := (linuxfw.NFT{}).Bans(layout.SSHBanSet); err == nil {
			if _, ssh := bans[a]; ssh {
				writeError(w, http.StatusConflict, "an SSH shell ban: it lapses after ssh.ban.for", nil)
				return
			}
		}
		writeError(w, http.StatusNotFound, a.String()+" is not banned here", nil)
		return
	}
	if err := linuxfw.Unban(layout.AdminBanSet, a); err != nil {
		s.log.Info("admin: ban lifted in the service only", "address", a, "err", err)
	}
	s.log.Warn("admin: ban lifted", "address", a, "name", c.id.Name)
	writeJSON(w, http.StatusOK, map[string]string{"lifted": a.String()})
}

// maxBundle bounds an uploaded firmware bundle.
const maxBundle = 512 << 20

// putUpdate takes a firmware bundle and has PID 1 install it, as
// `gatehouse update FILE` does: the same command of the table.
func (s *server) putUpdate(w http.ResponseWriter, r *http.Request, c caller) {
	// A bundle is tens of megabytes: more time than a request's usual.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(10 * time.Minute))
	rc.SetWriteDeadline(time.Now().Add(15 * time.Minute))
	// A name of its own per upload: PID 1 copies it before it checks it,
	// and two uploads never share a file.
	f, err := os.CreateTemp(s.o.Paths.Admin(), "incoming-*.bundle")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error(), nil)
		return
	}
	file := f.Name()
	defer os.Remove(file)
	_, err = io.Copy(f, http.MaxBytesReader(nil, r.Body, maxBundle))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bundle upload: "+err.Error(), nil)
		return
	}
	args := []string{"update", file}
	q := r.URL.Query()
	if q.Get("allow_downgrade") == "1" {
		args = append(args, "--allow-downgrade")
	}
	if q.Get("reboot") == "1" {
		args = append(args, "--reboot")
	}
	s.log.Warn("admin: firmware update uploaded", "name", c.id.Name, "reboot", q.Get("reboot") == "1")
	out, err := s.run(args...)
	if err != nil {
		failure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"done": strings.TrimSpace(string(out))})
}

// setupRender answers the config the setup's answers make: the web
// console's setup page puts it in the editor, from where it is applied
// like any other.
func (s *server) setupRender(w http.ResponseWriter, r *http.Request, c caller) {
	var a setup.Answers
	if err := decodeJSON(r, &a); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	if a.WebPassword != "" {
		writeError(w, http.StatusBadRequest, "web_password: the API does not set passwords; use `gatehouse admin passwd` or the setup at the console", nil)
		return
	}
	text, err := setup.Render(a)
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			writeError(w, http.StatusBadRequest, "the answers make an invalid config", problems(errs))
			return
		}
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"yaml": string(text)})
}

// writeFile writes data as a file only root reads.
func writeFile(name string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return err
	}
	return os.WriteFile(name, data, 0o600)
}
