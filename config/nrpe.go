package config

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// NRPE is the NRPE server that Nagios and Icinga ask with check_nrpe: the
// built-in checks only, nothing executed, from monitoring.hosts and its own
// allow list only.
type NRPE struct {
	Listen string  `yaml:"listen"` // default :5666
	Allow  PeerSet `yaml:"allow"`  // besides monitoring.hosts
	// SSL is off (plain only), on (TLS and plain on the one port, told
	// apart by the first byte; the default) or required (TLS only).
	SSL            string   `yaml:"ssl"`
	TLS            NRPETLS  `yaml:"tls"`
	AllowArguments bool     `yaml:"allow_arguments"` // thresholds from $ARGn$ (check_nrpe -a)
	Timeout        Duration `yaml:"timeout"`         // a connection's whole life; default 10s
	// ConnectionsPerHost bounds the connections one source has open at
	// once; default 8.
	ConnectionsPerHost int `yaml:"connections_per_host"`
	// Checks sets thresholds: check name, metric name, warning and
	// critical as Nagios ranges (NRPEChecks lists them and their defaults).
	Checks map[string]map[string]NRPEThreshold `yaml:"checks"`
}

// NRPETLS is the NRPE server's certificate and who may present a client
// certificate.
type NRPETLS struct {
	Cert string `yaml:"cert"` // PEM; a self-signed one is made on first start when absent
	Key  string `yaml:"key"`
	// ClientCA verifies client certificates (check_nrpe -C/-K);
	// ClientCerts is optional (verified when given, the default) or
	// required.
	ClientCA    string `yaml:"client_ca"`
	ClientCerts string `yaml:"client_certs"`
}

// NRPEThreshold is a metric's warning and critical range.
type NRPEThreshold struct {
	Warning  *Range `yaml:"warning"`
	Critical *Range `yaml:"critical"`
}

// NRPEMetric is one value a built-in check measures, with its default
// thresholds ("" for none).
type NRPEMetric struct {
	Name, Unit        string
	Warning, Critical string
}

// NRPECheck is a built-in check: its metrics in the order of check_nrpe's
// arguments ($ARG1$ the first metric's warning, $ARG2$ its critical, $ARG3$
// the second's warning...).
type NRPECheck struct {
	Name    string
	Metrics []NRPEMetric
}

// NRPEChecks are the built-in checks. Nothing else is answered: there is
// no shell and nothing is executed. check_services also answers as
// check_service_NAME for one service.
var NRPEChecks = []NRPECheck{
	{"check_load", []NRPEMetric{{"load1", "", "8", "16"}, {"load5", "", "6", "12"}, {"load15", "", "4", "8"}}},
	{"check_disk", []NRPEMetric{{"free", "%", "20:", "10:"}}},
	{"check_mem", []NRPEMetric{{"available", "%", "10:", "5:"}}},
	{"check_services", []NRPEMetric{{"down", "", "", "0"}, {"restarts", "", "", ""}}},
	{"check_queue", []NRPEMetric{{"depth", "", "100", "500"}, {"deferred", "", "50", "200"}, {"oldest", "s", "3600", "14400"}}},
	{"check_ntp", []NRPEMetric{{"offset", "s", "0.5", "1"}}},
	{"check_collector", []NRPEMetric{{"failing", "", "", "0"}}},
	{"check_firewall", []NRPEMetric{{"rules_in", "", "", ""}, {"drops_in", "", "", ""}, {"drops_out", "", "", ""}}},
	{"check_paths", []NRPEMetric{{"failed", "", "", "0"}}},
	// A node without a report for stale_after is critical; one whose
	// config lags or whose clock is off, a warning; lag (config versions
	// behind, the most of any node) alerts only when asked to.
	{"check_cluster", []NRPEMetric{{"nodes", "", "", ""}, {"unreachable", "", "", "0"}, {"problems", "", "0", ""}, {"lag", "", "", ""}}},
}

// NRPECheckNamed is the built-in check called name.
func NRPECheckNamed(name string) (NRPECheck, bool) {
	for _, c := range NRPEChecks {
		if c.Name == name {
			return c, true
		}
	}
	return NRPECheck{}, false
}

// Range is a Nagios threshold range: "10" alerts outside 0..10, "10:"
// below 10, "~:10" above 10, "10:20" outside 10..20, and a leading "@"
// alerts inside the range instead.
type Range struct {
	Text    string
	Lo, Hi  float64 // -Inf / +Inf when open
	Inside  bool    // "@": alert inside
	present bool
}

// ParseRange parses a Nagios threshold range.
func ParseRange(s string) (Range, error) {
	r := Range{Text: s, Lo: 0, Hi: math.Inf(1), present: true}
	t := s
	if strings.HasPrefix(t, "@") {
		r.Inside, t = true, t[1:]
	}
	if t == "" {
		return Range{}, fmt.Errorf("%q is not a threshold range (like 10, 10:, ~:10, 10:20 or @10:20)", s)
	}
	num := func(v string) (float64, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%q is not a threshold range (like 10, 10:, ~:10, 10:20 or @10:20)", s)
		}
		return f, nil
	}
	var err error
	if lo, hi, ok := strings.Cut(t, ":"); ok {
		switch lo {
		case "~":
			r.Lo = math.Inf(-1)
		case "":
			return Range{}, fmt.Errorf("%q is not a threshold range (like 10, 10:, ~:10, 10:20 or @10:20)", s)
		default:
			if r.Lo, err = num(lo); err != nil {
				return Range{}, err
			}
		}
		if hi != "" {
			if r.Hi, err = num(hi); err != nil {
				return Range{}, err
			}
		}
	} else if r.Hi, err = num(t); err != nil {
		return Range{}, err
	}
	if r.Lo > r.Hi {
		return Range{}, fmt.Errorf("%q: the start is above the end", s)
	}
	return r, nil
}

// Set says whether a range was given.
func (r *Range) Set() bool { return r != nil && r.present }

// Alerts says whether v is outside the range (inside it, for "@").
func (r *Range) Alerts(v float64) bool {
	if !r.Set() {
		return false
	}
	in := v >= r.Lo && v <= r.Hi
	return in == r.Inside
}

// String is the range as written.
func (r *Range) String() string {
	if !r.Set() {
		return ""
	}
	return r.Text
}

// UnmarshalYAML decodes a Nagios range such as 10, "10:" or "@10:20".
func (r *Range) UnmarshalYAML(node ast.Node) error {
	s, perr := scalar(node)
	if perr != nil {
		return perr
	}
	v, err := ParseRange(s)
	if err != nil {
		return &posError{tok: node.GetToken(), msg: err.Error()}
	}
	*r = v
	return nil
}

// Defaults of the NRPE server.
const (
	DefaultNRPEListen             = ":5666"
	DefaultNRPETimeout            = 10 * time.Second
	DefaultNRPEConnectionsPerHost = 8
)

func (c *Config) nrpeDefaults() {
	n := c.NRPE
	if n == nil {
		return
	}
	if n.Listen == "" {
		n.Listen = DefaultNRPEListen
	}
	if n.SSL == "" {
		n.SSL = "on"
	}
	if n.TLS.ClientCerts == "" {
		n.TLS.ClientCerts = "optional"
	}
	if n.Timeout.Duration == 0 {
		n.Timeout.Duration = DefaultNRPETimeout
	}
	if n.ConnectionsPerHost == 0 {
		n.ConnectionsPerHost = DefaultNRPEConnectionsPerHost
	}
}

func (c *Config) checkNRPE(ck *checker) {
	n := c.NRPE
	if n == nil {
		return
	}
	if _, port, err := net.SplitHostPort(n.Listen); err != nil {
		ck.errf("nrpe.listen", "%q is not host:port (like :5666)", n.Listen)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		ck.errf("nrpe.listen", "%q: port out of range", n.Listen)
	}
	switch n.SSL {
	case "off", "on", "required":
	default:
		ck.errf("nrpe.ssl", "%q: give off, on or required", n.SSL)
	}
	if (n.TLS.Cert == "") != (n.TLS.Key == "") {
		ck.errf("nrpe.tls", "give both cert and key, or neither (a self-signed certificate is made)")
	}
	switch n.TLS.ClientCerts {
	case "optional":
	case "required":
		if n.TLS.ClientCA == "" {
			ck.errf("nrpe.tls.client_certs", "required client certificates need tls.client_ca")
		}
		if n.SSL != "required" {
			// Plain text would go around the certificate.
			ck.errf("nrpe.tls.client_certs", "required client certificates need ssl: required")
		}
	default:
		ck.errf("nrpe.tls.client_certs", "%q: give optional or required", n.TLS.ClientCerts)
	}
	if n.SSL == "off" && (n.TLS.ClientCA != "" || n.TLS.ClientCerts == "required") {
		ck.errf("nrpe.tls", "client certificates need ssl on or required")
	}
	if t := n.Timeout.Duration; t < time.Second || t > 5*time.Minute {
		ck.errf("nrpe.timeout", "%s is out of range (1s to 5m)", t)
	}
	if n.ConnectionsPerHost < 1 || n.ConnectionsPerHost > 1000 {
		ck.errf("nrpe.connections_per_host", "%d is out of range (1 to 1000)", n.ConnectionsPerHost)
	}
	if n.Allow.Len() == 0 && c.Monitoring.Hosts.Len() == 0 {
		ck.warnf("nrpe", "neither nrpe.allow nor monitoring.hosts lists anyone: no one may connect")
	}
	for name, metrics := range n.Checks {
		chk, ok := NRPECheckNamed(name)
		if !ok {
			var names []string
			for _, c := range NRPEChecks {
				names = append(names, c.Name)
			}
			ck.errf("nrpe.checks."+name, "no such check (the built-in checks: %s)", strings.Join(names, ", "))
			continue
		}
		for m := range metrics {
			found := false
			var names []string
			for _, cm := range chk.Metrics {
				names = append(names, cm.Name)
				found = found || cm.Name == m
			}
			if !found {
				ck.errf("nrpe.checks."+name+"."+m, "%s measures no %s (it measures %s)", name, m, strings.Join(names, ", "))
			}
		}
	}
}

// Port is the port the server listens on (its listen address is
// validated).
func (n *NRPE) Port() int {
	_, port, _ := net.SplitHostPort(n.Listen)
	p, _ := strconv.Atoi(port)
	return p
}

// NRPEEnabled reports whether the NRPE server runs.
func (c *Config) NRPEEnabled() bool { return c.NRPE != nil }
