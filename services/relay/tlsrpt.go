package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"

	"gatehouse/dnsclient"
	"gatehouse/mailmsg"
	"gatehouse/mtasts"
	"gatehouse/queue"
	"gatehouse/tlsrpt"
)

// TLS reporting (RFC 8460): the delivery counts its sessions under MTA-STS
// and DANE policies in the Recorder; here the counts are flushed to disk
// every minute, and the days before today are sent as reports, one per
// policy domain that publishes a _smtp._tls record, then forgotten.

// How often the counts are saved and past days looked for. A day's
// reports go out within reportEvery after midnight UTC (or after the
// first start that finds them).
const (
	flushEvery  = time.Minute
	reportEvery = 10 * time.Minute
)

// reportLoop runs until ctx ends, then saves the counts a last time.
func (s *Service) reportLoop(ctx context.Context) {
	flush, report := time.NewTicker(flushEvery), time.NewTicker(reportEvery)
	defer flush.Stop()
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := s.reports.Flush(); err != nil {
				s.log.Error("TLS report counts not saved", "err", err)
			}
			return
		case <-flush.C:
			if err := s.reports.Flush(); err != nil {
				s.log.Error("TLS report counts not saved", "err", err)
			}
		case <-report.C:
			s.sendReports(ctx)
		}
	}
}

// sendReports sends the reports of the days before today and forgets
// those days. A report that cannot be sent is logged and not tried again:
// a report is a courtesy, and a day's counts resent for days would be
// worse than one missing.
func (s *Service) sendReports(ctx context.Context) {
	c := s.config()
	if c == nil || c.TLSRPT == nil {
		return
	}
	if err := s.reports.Flush(); err != nil {
		s.log.Error("TLS report counts not saved", "err", err)
	}
	days, err := s.reports.Days()
	if err != nil {
		s.log.Error("TLS reports", "err", err)
		return
	}
	today := time.Now().UTC().Format("2006-01-02")
	res := mtasts.DNS{Lookup: dnsclient.New(s.opts.ResolvConf)}
	for _, day := range days {
		if day >= today {
			continue
		}
		domains, err := s.reports.Domains(day)
		if err != nil {
			s.log.Error("TLS reports", "day", day, "err", err)
			continue
		}
		for _, domain := range domains {
			if ctx.Err() != nil {
				return
			}
			s.sendReport(ctx, res, day, domain)
		}
		if err := s.reports.Remove(day); err != nil {
			s.log.Error("TLS reports", "day", day, "err", err)
		}
	}
}

func (s *Service) sendReport(ctx context.Context, res tlsrpt.TXTResolver, day, domain string) {
	c := s.config()
	rep, err := s.reports.Report(day, domain)
	if err != nil || rep == nil {
		if err != nil {
			s.log.Error("TLS report", "day", day, "domain", domain, "err", err)
		}
		return
	}
	rep.OrganizationName, rep.ContactInfo = c.TLSRPT.Organization, c.TLSRPT.Contact
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	rec, err := tlsrpt.LookupRecord(lctx, res, domain)
	cancel()
	if err != nil {
		if !errors.Is(err, tlsrpt.ErrNoRecord) {
			s.log.Info("TLS report not sent: no record to send it to", "day", day, "domain", domain, "err", err)
		}
		return
	}
	gz, err := rep.Gzip()
	if err != nil {
		s.log.Error("TLS report", "domain", domain, "err", err)
		return
	}
	for _, to := range rec.Mailto() {
		if err := s.mailReport(rep, c.Hostname, to, gz); err != nil {
			s.log.Warn("TLS report not queued", "domain", domain, "to", to, "err", err)
		}
	}
	for _, u := range rec.HTTPS() {
		if err := s.postReport(ctx, u, gz); err != nil {
			s.log.Warn("TLS report not posted", "domain", domain, "url", u, "err", err)
		} else {
			s.log.Info("TLS report posted", "domain", domain, "url", u, "report_id", rep.ReportID)
		}
	}
}

// mailReport queues the report to a mailto: address, from
// postmaster@<hostname>.
func (s *Service) mailReport(rep *tlsrpt.Report, hostname, to string, gz []byte) error {
	addr, err := mailmsg.ParseAddress(to)
	if err != nil {
		return fmt.Errorf("rua address %q: %w", to, err)
	}
	w, err := s.store.Create()
	if err != nil {
		return err
	}
	defer w.Abort()
	from := "postmaster@" + hostname
	msg := reportMessage(rep, hostname, from, addr.String(), "tlsrpt."+w.ID()+"@"+hostname, time.Now(), gz)
	if _, err := w.Write(msg); err != nil {
		return err
	}
	env := &queue.Envelope{From: from, Rcpts: []queue.Rcpt{{Addr: addr.String(), Route: s.policy().RouteFor(addr)}},
		Arrived: time.Now(), Source: "tlsrpt"}
	if err := w.Commit(env); err != nil {
		return err
	}
	s.q.Add(*env)
	s.log.Info("TLS report queued", "domain", rep.Domain(), "to", addr.String(), "id", env.ID, "report_id", rep.ReportID)
	return nil
}

// reportMessage is a report as mail (RFC 8460 5.3): multipart/report of
// type tlsrpt, a short text and the gzipped JSON as an attachment named
// as 5.1 says, with the TLS-Report-Domain and -Submitter fields.
func reportMessage(rep *tlsrpt.Report, submitter, from, to, msgID string, date time.Time, gz []byte) []byte {
	var rnd [12]byte
	rand.Read(rnd[:])
	boundary := "tlsrpt-" + hex.EncodeToString(rnd[:])
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", "<"+from+">")
	h("To", "<"+to+">")
	h("Subject", mime.QEncoding.Encode("utf-8", rep.Subject()))
	h("Date", date.Format(time.RFC1123Z))
	h("Message-ID", "<"+msgID+">")
	h("TLS-Report-Domain", rep.Domain())
	h("TLS-Report-Submitter", submitter)
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type="tlsrpt"; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	b.WriteString("This is a multi-part message in MIME format.\r\n\r\n")
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n", boundary)
	fmt.Fprintf(&b, "This is an aggregate TLS report (RFC 8460) from %s\r\nfor the sessions to %s from %s to %s (UTC).\r\n\r\n",
		submitter, rep.Domain(), rep.DateRange.Start.Format(time.RFC3339), rep.DateRange.End.Format(time.RFC3339))
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n"+
		"Content-Disposition: attachment; filename=\"%s\"\r\n\r\n", boundary, rep.Filename())
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}

// postReport POSTs the report to an https: rua (RFC 8460 5.4), its host
// looked up through the appliance's resolver and its certificate verified
// against the relay's trusted CAs.
func (s *Service) postReport(ctx context.Context, url string, gz []byte) error {
	res := dnsclient.New(s.opts.ResolvConf)
	tr := &http.Transport{
		Proxy:             nil,
		TLSClientConfig:   &tls.Config{RootCAs: s.roots(), MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := res.LookupNetIP(ctx, "ip", host)
			if err != nil {
				return nil, err
			}
			var errs []error
			for _, ip := range ips {
				c, err := (&net.Dialer{Timeout: 15 * time.Second}).DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
				if err == nil {
					return c, nil
				}
				errs = append(errs, err)
			}
			return nil, fmt.Errorf("connect to %s: %w", host, errors.Join(errs...))
		},
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP status %s", resp.Status)
	}
	return nil
}
