//go:build e2e

package test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"gatehouse/adminauth"
	"gatehouse/control"
	"gatehouse/queue"
)

// The web console in a real browser: headless Chromium in the admin's
// namespace signs in to 8443, reads the dashboard, holds and releases a
// queued message, follows a log, checks the paths, applies a config and
// confirms it (kept), applies one and does not (rolled back), and turns
// setup answers into a config. Every page is saved as a PNG under
// build/screenshots/ for review; the first page's size and time to
// interactive are logged.
func TestWebConsole(t *testing.T) {
	t.Parallel()
	const password = "correct horse battery staple"
	w := newNetWorld(t)
	admin := addAdmin(t, w)
	ipIn(t, admin, "link", "set", "lo", "up") // Chromium's own loopback
	// No IPv6 on the admin's side: an address finishing duplicate address
	// detection while a page loads is a network change to Chromium, and
	// it aborts the load (ERR_NETWORK_CHANGED).
	run(t, "ip", "netns", "exec", admin, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	if err := adminauth.SetPassword(filepath.Join(w.state(), "admin"), password); err != nil {
		t.Fatal(err)
	}
	w.gatehouse(t, webConfig("mx.example.test"), "--firewall")
	w.waitFor(t, "admin running", 30*time.Second, func(st *control.Status) bool { return phaseOf(st, "admin") == "running" })

	// One message that stays queued: its next hop never answers.
	inNS(t, w.appl, func() {
		if !sendOne("127.0.0.1:2525", 1) {
			t.Fatal("the relay did not take the message")
		}
	})
	msgs := queueList(t, w)
	if len(msgs) != 1 {
		t.Fatalf("queue: want one message, have %+v", msgs)
	}
	id := msgs[0].ID

	c := newConsole(t, admin, "https://10.78.0.2:8443/", certSPKI(t, filepath.Join(w.state(), "admin", "cert.pem")))
	c.firstPage()
	c.login(password)
	c.dashboard(1)
	c.queue(id, func(held bool) {
		if m := queueList(t, w); len(m) != 1 || m[0].Hold != held {
			t.Errorf("the CLI's queue after the page's hold=%v: %+v", held, m)
		}
	})
	c.logs("smtp", func() {
		inNS(t, w.appl, func() { sendOne("127.0.0.1:2525", 2) }) // something new to follow
	})
	c.paths()
	c.firewall()
	c.configInvalid()
	c.configApply("mx.example.test", "mx2.example.test", true)
	c.configApply("mx2.example.test", "mx3.example.test", false)
	c.setup()
	c.logout()
	c.noProblems()
}

func webConfig(smtpHost string) string {
	return fmt.Sprintf(`
interfaces:
  - {name: a0, addresses: [10.77.0.2/24]}
  - {name: a1, addresses: [10.78.0.2/24]}
admin:
  allow: [10.78.0.1]
smtp:
  hostname: %s
  listen: {smtp: "127.0.0.1:2525", submission: "off", smtps: "off"}
  trusted_networks: [127.0.0.0/8]
  domains:
    - {name: example.test, next_hop: "[127.0.0.1]:2526", tls: none}
  queue: {lifetime: 1h, min_backoff: 10m, max_backoff: 1h}
firewall:
  backend: nftables
`, smtpHost)
}

func queueList(t *testing.T, w *netWorld) []queue.Info {
	t.Helper()
	out, err := gatehouseCmd(t, w, "queue", "list", "--format", "json")
	if err != nil {
		t.Fatalf("queue list: %v: %s", err, out)
	}
	var list []queue.Info
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("queue list: %v: %s", err, out)
	}
	return list
}

// certSPKI is the value --ignore-certificate-errors-spki-list takes: the
// browser trusts this one self-signed certificate and no other.
func certSPKI(t *testing.T, file string) string {
	t.Helper()
	var b []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if b, err = os.ReadFile(file); err == nil || time.Now().After(deadline) {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", file)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// console is one browser tab on the web console.
type console struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
}

// newConsole starts headless Chromium in namespace ns ("": this one). It
// talks DevTools over a pipe, which `ip netns exec` passes on, so the test
// needs no port into the namespace.
func newConsole(t *testing.T, ns, base, spki string) *console {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("no chromium: %v", err)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")),
		chromedp.WindowSize(1280, 900),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			if ns != "" {
				cmd.Args = append([]string{"ip", "netns", "exec", ns, cmd.Path}, cmd.Args[1:]...)
				cmd.Path = ip
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}),
	)
	if spki != "" {
		opts = append(opts, chromedp.Flag("ignore-certificate-errors-spki-list", spki))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser; it lives as long as ctx.
	watch := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument,
			page.AddScriptToEvaluateOnNewDocumentParams{Source: pageWatch})
		return err
	})
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), watch); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	shots := filepath.Join("..", "build", "screenshots")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	return &console{t: t, ctx: ctx, base: base, shots: shots}
}

// pageWatch collects, in every document, what the console should never
// cause: a Content-Security-Policy violation (inline script or style, a
// foreign origin) and an uncaught error. It runs outside the page's CSP.
const pageWatch = `
window.__problems = [];
document.addEventListener('securitypolicyviolation', (e) => __problems.push('CSP ' + e.violatedDirective + ': ' + e.blockedURI));
window.addEventListener('error', (e) => __problems.push('error: ' + e.message));
window.addEventListener('unhandledrejection', (e) => __problems.push('unhandled rejection: ' + e.reason));
`

// noProblems fails the test on anything pageWatch saw.
func (c *console) noProblems() {
	c.t.Helper()
	probs, err := eval[[]string](c, `window.__problems`)
	if err != nil {
		c.t.Fatalf("reading the page's problems: %v", err)
	}
	for _, p := range probs {
		c.t.Errorf("the page: %s", p)
	}
}

// do runs browser steps; on failure it saves what the page showed.
func (c *console) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		c.failShot(what)
		c.t.Fatalf("%s: %v", what, err)
	}
}

// wait polls a JavaScript predicate in the page until it holds; limit
// bounds how long the system may take, it is not a timing assertion.
func (c *console) wait(what, expr string, limit time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, limit+10*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingTimeout(limit), chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		c.failShot(what)
		flash, _ := eval[string](c, `document.getElementById('flash').textContent`)
		c.t.Fatalf("%s: %v (the page's last message: %q)", what, err, flash)
	}
}

func eval[T any](c *console, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

func (c *console) js(expr string) {
	c.t.Helper()
	if _, err := eval[any](c, expr); err != nil {
		c.t.Fatalf("%s: %v", expr, err)
	}
}

// api asks the API from inside the page, with the page's session cookie:
// what the console shows is checked against what the server says.
func (c *console) api(path string, v any) int {
	c.t.Helper()
	r, err := eval[[]string](c, fmt.Sprintf(
		`fetch(%q, {credentials: 'same-origin', cache: 'no-store'}).then(async r => [String(r.status), await r.text()])`,
		"/api/v1"+path))
	if err != nil {
		c.t.Fatalf("GET %s from the page: %v", path, err)
	}
	if v != nil && r[0] == "200" {
		if err := json.Unmarshal([]byte(r[1]), v); err != nil {
			c.t.Fatalf("GET %s: %v: %s", path, err, r[1])
		}
	}
	var code int
	fmt.Sscan(r[0], &code)
	return code
}

func (c *console) shot(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err == nil {
		err = os.WriteFile(filepath.Join(c.shots, name+".png"), png, 0o644)
	}
	if err != nil {
		c.t.Errorf("screenshot %s: %v", name, err)
	}
}

func (c *console) failShot(what string) {
	c.shot("failed-" + regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(what), "-"))
}

// page switches to one of the console's pages.
func (c *console) page(name string) {
	c.t.Helper()
	c.js(fmt.Sprintf(`location.hash = %q`, "#"+name))
	c.wait("page "+name, fmt.Sprintf(`!document.getElementById(%q).hidden`, "page-"+name), 10*time.Second)
}

// firstPage loads the console twice, in a browser that has loaded
// nothing yet (cold) and again (warm: the server says no-cache, so the
// files come again), and logs what it weighs and when it was usable (the
// login form shown, every handler in place), from the browser's own
// Navigation and Resource Timing. Time is logged, not asserted.
func (c *console) firstPage() {
	c.t.Helper()
	for _, load := range []string{"cold", "warm"} {
		nav := chromedp.Navigate(c.base)
		if load == "warm" {
			nav = chromedp.Reload()
		}
		c.do("open the console ("+load+")", nav)
		c.wait("the login form", `!document.getElementById('login').hidden &&
			performance.getEntriesByName('gatehouse-interactive').length > 0 &&
			performance.getEntriesByType('navigation')[0].loadEventEnd > 0`, 20*time.Second)
		var m struct {
			Transfer, Decoded, Files                  int
			TTFB, DOMInteractive, DCL, Load, Interact float64
		}
		s, err := eval[string](c, `JSON.stringify((() => {
			const n = performance.getEntriesByType('navigation')[0];
			const rs = performance.getEntriesByType('resource');
			const sum = (k) => n[k] + rs.reduce((a, r) => a + r[k], 0);
			return {Transfer: sum('transferSize'), Decoded: sum('decodedBodySize'), Files: 1 + rs.length,
				TTFB: n.responseStart, DOMInteractive: n.domInteractive, DCL: n.domContentLoadedEventEnd,
				Load: n.loadEventEnd, Interact: performance.getEntriesByName('gatehouse-interactive')[0].startTime};
		})())`)
		if err == nil {
			err = json.Unmarshal([]byte(s), &m)
		}
		if err != nil {
			c.t.Fatalf("navigation timing: %v", err)
		}
		c.t.Logf("first page, %s: %d bytes transferred (%d decoded) in %d requests; first byte %.0f ms, DOM interactive %.0f ms, DOMContentLoaded %.0f ms, load %.0f ms, login form usable %.0f ms",
			load, m.Transfer, m.Decoded, m.Files, m.TTFB, m.DOMInteractive, m.DCL, m.Load, m.Interact)
		if m.Transfer > 100<<10 {
			c.t.Errorf("the first page transfers %d bytes; the budget is 100 KB", m.Transfer)
		}
	}
	c.shot("login")
}

func (c *console) login(password string) {
	c.t.Helper()
	c.do("a wrong password", chromedp.SendKeys(chromedp.CSS("#login-secret"), "not the password"),
		chromedp.Click(chromedp.CSS("#login-submit")))
	c.wait("the wrong password refused", `!document.getElementById('login-error').hidden`, 10*time.Second)
	c.js(`document.getElementById('login-secret').value = ''`)
	c.do("sign in", chromedp.SendKeys(chromedp.CSS("#login-secret"), password),
		chromedp.Click(chromedp.CSS("#login-submit")))
	c.wait("signed in", `!document.getElementById('page-dashboard').hidden`, 10*time.Second)
	var s struct{ Name, Role, CSRF string }
	if code := c.api("/session", &s); code != 200 || s.Role != "admin" {
		c.t.Fatalf("GET /session after login: %d %+v", code, s)
	}
}

func (c *console) dashboard(queued int) {
	c.t.Helper()
	c.wait("the dashboard filled in", fmt.Sprintf(`
		document.querySelector('#dash-services tr[data-service="smtp"]') &&
		document.querySelector('#dash-services tr[data-service="admin"]') &&
		document.getElementById('dash-queue').textContent === %q &&
		document.getElementById('host').textContent !== ''`, fmt.Sprint(queued)), 15*time.Second)
	phase, _ := eval[string](c, `document.querySelector('#dash-services tr[data-service="admin"] td:nth-child(2)').textContent`)
	if phase != "running" {
		c.t.Errorf("the dashboard shows admin %q", phase)
	}
	c.shot("dashboard")
}

// queue searches for the message, holds and releases it from the page;
// check sees from outside whether it is held.
func (c *console) queue(id string, check func(held bool)) {
	c.t.Helper()
	row := fmt.Sprintf(`document.querySelector('tr[data-id=%q]')`, id)
	c.page("queue")
	c.wait("the message listed", row, 10*time.Second)
	c.do("search", chromedp.SendKeys(chromedp.CSS("#queue-search"), "no-such-sender"))
	c.wait("the search hides it", `document.querySelectorAll('#queue-table tbody tr').length === 0`, 5*time.Second)
	c.js(fmt.Sprintf(`(s => { s.value = %q; s.dispatchEvent(new Event('input')); })(document.getElementById('queue-search'))`, strings.ToLower(id)))
	c.wait("the search finds it by id", row, 5*time.Second)
	c.shot("queue")

	c.do("hold", chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-id=%q] [data-test=hold]`, id))))
	c.wait("held", row+` && `+row+`.classList.contains('held')`, 10*time.Second)
	if check != nil {
		check(true)
	}
	c.shot("queue-held")
	c.do("release", chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-id=%q] [data-test=release]`, id))))
	c.wait("released", row+` && !`+row+`.classList.contains('held')`, 10*time.Second)
	if check != nil {
		check(false)
	}
}

// logs shows a service's last lines, then follows; more makes new lines.
func (c *console) logs(service string, more func()) {
	c.t.Helper()
	c.page("logs")
	c.wait("the services listed", fmt.Sprintf(`document.querySelector('#logs-service option[value=%q]')`, service), 10*time.Second)
	c.js(fmt.Sprintf(`(s => { s.value = %q; s.dispatchEvent(new Event('change')); })(document.getElementById('logs-service'))`, service))
	c.wait("its last lines", `document.getElementById('logs-out').textContent.length > 0`, 10*time.Second)
	c.do("follow", chromedp.Click(chromedp.CSS("#logs-follow")))
	c.wait("following", `document.getElementById('logs-follow').getAttribute('aria-pressed') === 'true'`, 5*time.Second)
	if more != nil {
		more()
	}
	c.wait("followed lines", `document.getElementById('logs-out').textContent.length > 0`, 20*time.Second)
	c.shot("logs")
	c.do("stop following", chromedp.Click(chromedp.CSS("#logs-follow")))
}

func (c *console) paths() {
	c.t.Helper()
	c.page("paths")
	c.wait("the path table", `document.querySelectorAll('#paths-table tbody tr').length > 0`, 10*time.Second)
	c.do("check now", chromedp.Click(chromedp.CSS("#paths-check")))
	c.wait("the verdicts", `(t => t !== '' && t !== 'checking…')(document.getElementById('paths-summary').textContent)`, 90*time.Second)
	c.shot("paths")
}

func (c *console) firewall() {
	c.t.Helper()
	c.page("firewall")
	c.wait("the firewall's status", `document.querySelectorAll('#fw-status dt').length > 0 &&
		document.querySelectorAll('#fw-bans tbody tr').length > 0`, 10*time.Second)
	c.shot("firewall")
}

// configInvalid types a line the config does not know: the editor says
// so, by line and column, without a click.
func (c *console) configInvalid() {
	c.t.Helper()
	c.page("config")
	c.wait("the running config", `document.getElementById('config-text').value.includes('smtp:') &&
		document.getElementById('config-valid').dataset.state === 'valid'`, 10*time.Second)
	c.shot("config")
	c.edit(`t.value + "\nno_such_section: 1\n"`)
	c.wait("the problem shown", `document.getElementById('config-valid').dataset.state === 'invalid' &&
		document.querySelector('#config-gutter .bad') !== null &&
		/^\d+:\d+ /.test(document.querySelector('#config-problems li').textContent)`, 10*time.Second)
	c.shot("config-invalid")
	c.edit(`t.value.replace("\nno_such_section: 1\n", "")`)
	c.wait("valid again", `document.getElementById('config-valid').dataset.state === 'valid'`, 10*time.Second)
}

// edit replaces the editor's text with expr (t is the textarea) as typing
// would: an input event follows.
func (c *console) edit(expr string) {
	c.t.Helper()
	c.js(fmt.Sprintf(`(t => { t.value = %s; t.dispatchEvent(new Event('input')); })(document.getElementById('config-text'))`, expr))
}

// configApply changes the relay's host name from old to next and applies
// it with a 5 s confirm window; confirm or not, the test then waits for
// the outcome: kept past the deadline, or rolled back to old.
func (c *console) configApply(old, next string, confirm bool) {
	c.t.Helper()
	c.page("config")
	c.js(`document.getElementById('config-text').value = ''`) // to see the reload land
	c.do("reload the running config", chromedp.Click(chromedp.CSS("#config-reload")))
	c.wait("the running config", fmt.Sprintf(`document.getElementById('config-text').value.includes(%q)`, old), 10*time.Second)
	c.edit(fmt.Sprintf(`t.value.replace(%q, %q)`, "hostname: "+old, "hostname: "+next))
	c.wait("valid", `document.getElementById('config-valid').dataset.state === 'valid'`, 10*time.Second)
	c.js(`document.getElementById('config-within').value = '5'`)
	applied := time.Now()
	c.do("apply", chromedp.Click(chromedp.CSS("#config-apply")))
	c.wait("the countdown", `!document.getElementById('config-pending').hidden`, 20*time.Second)
	c.shot("config-pending")
	var cfg struct {
		YAML         string `json:"yaml"`
		PendingUntil string `json:"pending_until"` // the contract's name
		ConfirmBy    string `json:"confirm_by"`    // the server's
	}
	if !confirm {
		c.wait("rolled back", `document.getElementById('config-state').dataset.state === 'rolledback'`, time.Minute)
		c.shot("config-rolledback")
		if code := c.api("/config", &cfg); code != 200 || !strings.Contains(cfg.YAML, old) || strings.Contains(cfg.YAML, next) || cfg.PendingUntil+cfg.ConfirmBy != "" {
			c.t.Errorf("after the rollback the API says %d %+v", code, cfg)
		}
		if v, _ := eval[string](c, `document.getElementById('config-text').value`); !strings.Contains(v, old) || strings.Contains(v, next) {
			c.t.Errorf("after the rollback the editor has:\n%s", v)
		}
		return
	}
	c.do("confirm", chromedp.Click(chromedp.CSS("#config-confirm")))
	c.wait("confirmed", `document.getElementById('config-state').dataset.state === 'confirmed'`, 20*time.Second)
	c.shot("config-confirmed")
	// Kept: still the new one once the window it was applied with is over.
	for past := applied.Add(5*time.Second + 3*time.Second); ; time.Sleep(500 * time.Millisecond) {
		if code := c.api("/config", &cfg); code != 200 || !strings.Contains(cfg.YAML, next) || cfg.PendingUntil+cfg.ConfirmBy != "" {
			c.t.Fatalf("the confirmed config did not stay: %d %+v", code, cfg)
		}
		if time.Now().After(past) {
			break
		}
	}
}

// setup turns answers into a config and opens it in the editor, applied
// by nobody.
func (c *console) setup() {
	c.t.Helper()
	if code := c.api("/setup", nil); code == 404 {
		c.t.Log("the API has no /setup yet: the setup page is not tried")
		return
	}
	c.page("setup")
	for sel, v := range map[string]string{
		"#setup-hostname": "gw9.example.test",
		"#setup-dns":      "10.77.0.1",
		"#setup-domains":  "example.test",
		"#setup-internal": "10.77.0.25:25",
		"#setup-trusted":  "10.77.0.0/24",
	} {
		c.do("type "+sel, chromedp.SendKeys(chromedp.CSS(sel), v))
	}
	c.shot("setup")
	c.do("make the config", chromedp.Click(chromedp.CSS("#setup-submit")))
	c.wait("the config for review", `!document.getElementById('page-config').hidden &&
		document.getElementById('config-text').value.includes('gw9.example.test') &&
		!document.getElementById('config-note').hidden`, 20*time.Second)
	c.shot("setup-review")
}

func (c *console) logout() {
	c.t.Helper()
	c.do("sign out", chromedp.Click(chromedp.CSS("#logout")))
	c.wait("the login form", `!document.getElementById('login').hidden`, 10*time.Second)
	if code := c.api("/session", nil); code != 401 {
		c.t.Errorf("GET /session after logout: %d, want 401", code)
	}
}
