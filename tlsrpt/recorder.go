// Package tlsrpt is SMTP TLS Reporting (RFC 8460) for the relay's
// outbound sessions: the result types failures are filed under, a
// Recorder counting sessions per policy domain and day on disk, the daily
// JSON report, and the _smtp._tls record saying where it goes. Sending it
// (mailto: through the queue, https: POST) is the relay's.
package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"gatehouse/safeio"
)

// PolicyType is an RFC 8460 4.4 policy-type.
type PolicyType string

const (
	STS           PolicyType = "sts"
	TLSA          PolicyType = "tlsa"
	NoPolicyFound PolicyType = "no-policy-found"
)

// Policy is the policy a session was made under.
type Policy struct {
	Type   PolicyType `json:"policy-type"`
	String []string   `json:"policy-string,omitempty"` // the STS policy's lines, or the TLSA records (presentation form)
	Domain string     `json:"policy-domain"`
	MXHost []string   `json:"mx-host,omitempty"` // the STS policy's mx patterns; the MX host for TLSA
}

// Failure is one failed session (RFC 8460 4.4 failure-details, without
// the count).
type Failure struct {
	Result                ResultType `json:"result-type"`
	SendingMTAIP          string     `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname   string     `json:"receiving-mx-hostname,omitempty"`
	ReceivingMXHELO       string     `json:"receiving-mx-helo,omitempty"`
	ReceivingIP           string     `json:"receiving-ip,omitempty"`
	AdditionalInformation string     `json:"additional-information,omitempty"` // a URI
	FailureReasonCode     string     `json:"failure-reason-code,omitempty"`
}

// FailureDetail is a Failure with the number of sessions it happened to.
type FailureDetail struct {
	Failure
	FailedSessionCount int64 `json:"failed-session-count"`
}

// MarshalJSON keeps RFC 8460's order of the fields (a reader's help
// only: JSON objects are unordered).
func (d FailureDetail) MarshalJSON() ([]byte, error) {
	type out struct {
		Result                ResultType `json:"result-type"`
		SendingMTAIP          string     `json:"sending-mta-ip,omitempty"`
		ReceivingMXHostname   string     `json:"receiving-mx-hostname,omitempty"`
		ReceivingMXHELO       string     `json:"receiving-mx-helo,omitempty"`
		ReceivingIP           string     `json:"receiving-ip,omitempty"`
		FailedSessionCount    int64      `json:"failed-session-count"`
		AdditionalInformation string     `json:"additional-information,omitempty"`
		FailureReasonCode     string     `json:"failure-reason-code,omitempty"`
	}
	f := d.Failure
	return json.Marshal(out{f.Result, f.SendingMTAIP, f.ReceivingMXHostname, f.ReceivingMXHELO, f.ReceivingIP,
		d.FailedSessionCount, f.AdditionalInformation, f.FailureReasonCode})
}

// Summary counts a policy's sessions.
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failed     int64 `json:"total-failure-session-count"`
}

// PolicyResult is one entry of a report's policies.
type PolicyResult struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// DateRange is the day a report covers.
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// Report is an RFC 8460 4.4 report: one reporting organisation's sessions
// to one policy domain over one day (UTC).
type Report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyResult `json:"policies"`

	domain, submitter string
}

// JSON is the report as sent (application/tlsrpt+json).
func (r *Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// Gzip is the report compressed (application/tlsrpt+gzip), as mail
// attachments and most https: receivers take it (RFC 8460 5.3, 5.4).
func (r *Report) Gzip() ([]byte, error) {
	b, err := r.JSON()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Filename is the report's name as a gzipped attachment (RFC 8460 5.1):
// submitter!policy-domain!begin!end.json.gz, times in seconds since 1970.
func (r *Report) Filename() string {
	return fmt.Sprintf("%s!%s!%d!%d.json.gz", r.submitter, r.domain, r.DateRange.Start.Unix(), r.DateRange.End.Unix())
}

// Subject is the subject of the report's mail (RFC 8460 5.3).
func (r *Report) Subject() string {
	return fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", r.domain, r.submitter, r.ReportID)
}

// Domain is the policy domain the report is for.
func (r *Report) Domain() string { return r.domain }

// Options describe the reporting organisation.
type Options struct {
	Organization string // organization-name
	Contact      string // contact-info: an address or URI
	Submitter    string // the reporting MTA's host name (report-id, file name, subject)
	Log          *slog.Logger
}

// Bounds on what one day holds: a flood of domains or of distinct
// failures costs counts in the summary, never memory without end.
const (
	maxPoliciesPerDay    = 20000
	maxDetailsPerPolicy  = 100
	maxStringsPerPolicy  = 200
	maxFieldLength       = 1024
	dayFileSuffix        = ".json"
	dayLayout            = "2006-01-02"
	fileMode             = 0o600
	defaultDirectoryMode = 0o700
)

// Recorder counts sessions per day (UTC), policy domain and policy, in
// memory, and keeps the days on disk in dir, one JSON file a day, written
// by Flush (every minute or so, and at shutdown: a crash loses the counts
// since the last Flush, never a day's file).
type Recorder struct {
	dir  string
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu    sync.Mutex
	days  map[string]*day // "2006-01-02" → counts
	drops int64           // sessions not counted for the bounds
}

type day struct {
	policies []*PolicyResult
	index    map[string]int // policy key → policies index
	details  []map[string]int
	dirty    bool
}

// Open opens the recorder keeping its days in dir (made if missing).
func Open(dir string, o Options) (*Recorder, error) {
	if err := os.MkdirAll(dir, defaultDirectoryMode); err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{dir: dir, opts: o, log: log.With("subsystem", "tlsrpt"), now: time.Now, days: map[string]*day{}}, nil
}

// Success counts a session that met p (or, for no-policy-found, one
// that went through).
func (r *Recorder) Success(p Policy) { r.record(p, nil) }

// Failure counts a session that failed p, or would have under a testing
// policy.
func (r *Recorder) Failure(p Policy, f Failure) { r.record(p, &f) }

func (r *Recorder) record(p Policy, f *Failure) {
	p = clean(p)
	key := policyKey(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	d, err := r.dayLocked(r.now().UTC().Format(dayLayout))
	if err != nil {
		r.log.Error("day unreadable: counting afresh", "err", err)
	}
	i, ok := d.index[key]
	if !ok {
		if len(d.policies) >= maxPoliciesPerDay {
			r.drops++
			return
		}
		i = len(d.policies)
		d.index[key] = i
		d.policies = append(d.policies, &PolicyResult{Policy: p})
		d.details = append(d.details, map[string]int{})
	}
	pr := d.policies[i]
	d.dirty = true
	if f == nil {
		pr.Summary.Successful++
		return
	}
	pr.Summary.Failed++
	fc := cleanFailure(*f)
	fk := failureKey(fc)
	j, ok := d.details[i][fk]
	if !ok {
		if len(pr.FailureDetails) >= maxDetailsPerPolicy {
			return // in the summary only
		}
		j = len(pr.FailureDetails)
		d.details[i][fk] = j
		pr.FailureDetails = append(pr.FailureDetails, FailureDetail{Failure: fc})
	}
	pr.FailureDetails[j].FailedSessionCount++
}

// dayLocked returns the day named, loaded from its file the first time.
// On an error it returns an empty day all the same.
func (r *Recorder) dayLocked(name string) (*day, error) {
	if d := r.days[name]; d != nil {
		return d, nil
	}
	d := &day{index: map[string]int{}}
	r.days[name] = d
	b, err := os.ReadFile(filepath.Join(r.dir, name+dayFileSuffix))
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, err
	}
	var prs []*PolicyResult
	if err := json.Unmarshal(b, &prs); err != nil {
		return d, fmt.Errorf("%s: %w", name, err)
	}
	for _, pr := range prs {
		i := len(d.policies)
		d.index[policyKey(pr.Policy)] = i
		d.policies = append(d.policies, pr)
		m := map[string]int{}
		for j, fd := range pr.FailureDetails {
			m[failureKey(fd.Failure)] = j
		}
		d.details = append(d.details, m)
	}
	return d, nil
}

// Flush writes the days counted since the last Flush, and forgets the
// past days it wrote (they are read again when reported).
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	today := r.now().UTC().Format(dayLayout)
	var errs []error
	for name, d := range r.days {
		if d.dirty {
			b, err := json.Marshal(d.policies)
			if err == nil {
				// The directory's fsync only once a day: losing the rename
				// to a power cut costs the counts since the last Flush.
				var opts []safeio.Option
				if name == today {
					opts = append(opts, safeio.NoDirSync)
				}
				err = safeio.WriteFile(filepath.Join(r.dir, name+dayFileSuffix), append(b, '\n'), fileMode, opts...)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("tlsrpt: save %s: %w", name, err))
				continue
			}
			d.dirty = false
		}
		if name != today {
			delete(r.days, name)
		}
	}
	if r.drops > 0 {
		r.log.Warn("sessions not counted: too many policy domains in a day", "sessions", r.drops)
		r.drops = 0
	}
	return errors.Join(errs...)
}

// Days lists the days with counts on disk or in memory, oldest first, as
// "2006-01-02" (UTC). Those before today are ready to report.
func (r *Recorder) Days() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	seen := map[string]bool{}
	for name := range r.days {
		seen[name] = true
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), dayFileSuffix)
		if _, err := time.Parse(dayLayout, name); ok && err == nil {
			seen[name] = true
		}
	}
	var out []string
	for name := range seen {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

// Domains lists the policy domains a day has counts for.
func (r *Recorder) Domains(dayName string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := time.Parse(dayLayout, dayName); err != nil {
		return nil, fmt.Errorf("tlsrpt: day %q: %w", dayName, err)
	}
	d, err := r.dayLocked(dayName)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	var out []string
	for _, pr := range d.policies {
		if !slices.Contains(out, pr.Policy.Domain) {
			out = append(out, pr.Policy.Domain)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Report is the report on a day's sessions to domain, or nil when there
// were none. Its report-id is <day>.<domain>@<submitter>: the same
// report made twice has the same id, so that a receiver can tell a
// resend.
func (r *Recorder) Report(dayName, domain string) (*Report, error) {
	start, err := time.Parse(dayLayout, dayName)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: day %q: %w", dayName, err)
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	r.mu.Lock()
	defer r.mu.Unlock()
	d, err := r.dayLocked(dayName)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	rep := &Report{
		OrganizationName: r.opts.Organization,
		DateRange:        DateRange{Start: start.UTC(), End: start.UTC().Add(24*time.Hour - time.Second)},
		ContactInfo:      r.opts.Contact,
		ReportID:         fmt.Sprintf("%s.%s@%s", start.Format("20060102"), domain, r.opts.Submitter),
		Policies:         []PolicyResult{},
		domain:           domain,
		submitter:        r.opts.Submitter,
	}
	for _, pr := range d.policies {
		if pr.Policy.Domain == domain {
			c := *pr
			c.FailureDetails = slices.Clone(pr.FailureDetails)
			rep.Policies = append(rep.Policies, c)
		}
	}
	if len(rep.Policies) == 0 {
		return nil, nil
	}
	return rep, nil
}

// Remove forgets a day (once its reports are sent).
func (r *Recorder) Remove(dayName string) error {
	if _, err := time.Parse(dayLayout, dayName); err != nil {
		return fmt.Errorf("tlsrpt: day %q: %w", dayName, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.days, dayName)
	if err := os.Remove(filepath.Join(r.dir, dayName+dayFileSuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tlsrpt: %w", err)
	}
	return nil
}

// clean bounds what a policy brings into the counts, and puts the domain
// in one form.
func clean(p Policy) Policy {
	p.Domain = strings.ToLower(strings.TrimSuffix(cut(p.Domain), "."))
	p.String = cutAll(p.String)
	p.MXHost = cutAll(p.MXHost)
	return p
}

func cleanFailure(f Failure) Failure {
	f.Result = ResultType(cut(string(f.Result)))
	f.SendingMTAIP = cut(f.SendingMTAIP)
	f.ReceivingMXHostname = cut(f.ReceivingMXHostname)
	f.ReceivingMXHELO = cut(f.ReceivingMXHELO)
	f.ReceivingIP = cut(f.ReceivingIP)
	f.AdditionalInformation = cut(f.AdditionalInformation)
	f.FailureReasonCode = cut(f.FailureReasonCode)
	return f
}

func cut(s string) string {
	if len(s) > maxFieldLength {
		return s[:maxFieldLength]
	}
	return s
}

func cutAll(ss []string) []string {
	if len(ss) > maxStringsPerPolicy {
		ss = ss[:maxStringsPerPolicy]
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = cut(s)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// policyKey tells policies apart: a domain whose policy changes during
// the day has an entry for each.
func policyKey(p Policy) string {
	b, _ := json.Marshal(p)
	return string(b)
}

func failureKey(f Failure) string {
	b, _ := json.Marshal(f)
	return string(b)
}
