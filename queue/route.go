package queue

import (
	"encoding/json"
	"fmt"
	"strings"
)

// RouteKind says how a route finds its next hop.
type RouteKind uint8

// The kinds of route.
const (
	_         RouteKind = iota // the zero Route: no route
	Domain                     // a managed domain's next hop
	Connector                  // a connector's smart host
	MX                         // the destination domain's MX hosts
)

var routeKinds = [...]string{Domain: "domain", Connector: "connector", MX: "mx"}

// Route is where a recipient's mail goes: a managed domain's next hop, a
// connector's smart host, or the MX hosts of a domain (Name). It is chosen
// when the message is accepted and resolved against the running config
// when it is delivered, so a changed next hop applies to mail already
// queued. On disk and in `--format json` it is the string
// "domain:<name>", "connector:<name>" or "mx:<domain>".
type Route struct {
	Kind RouteKind
	Name string
}

// String is the route's written form, "" for the zero Route.
func (r Route) String() string {
	if r.Kind == 0 || int(r.Kind) >= len(routeKinds) {
		return r.Name
	}
	return routeKinds[r.Kind] + ":" + r.Name
}

// ParseRoute reads a route's written form; "" is the zero Route.
func ParseRoute(s string) (Route, error) {
	if s == "" {
		return Route{}, nil
	}
	kind, name, _ := strings.Cut(s, ":")
	for k, n := range routeKinds {
		if n != "" && n == kind {
			return Route{Kind: RouteKind(k), Name: name}, nil
		}
	}
	return Route{}, fmt.Errorf("unknown route %q", s)
}

func (r Route) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

func (r *Route) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	var err error
	*r, err = ParseRoute(s)
	return err
}

// Dedup is a de-duplication record a message carries: Key, opaque to the
// queue, in the set Set. From the message's commit on, Key is recorded as
// done in Set (Store.Seen), and it stays recorded after the message leaves
// the queue, until the set is pruned. Whoever queues the same thing again
// asks Seen first. On disk it is the string "<set>/<key>"; a set's name
// holds no "/".
type Dedup struct {
	Set, Key string
}

// IsZero says the message carries no record.
func (d Dedup) IsZero() bool { return d == Dedup{} }

func (d Dedup) MarshalJSON() ([]byte, error) {
	if d.IsZero() {
		return json.Marshal("")
	}
	return json.Marshal(d.Set + "/" + d.Key)
}

func (d *Dedup) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*d = Dedup{}
	if s != "" {
		d.Set, d.Key, _ = strings.Cut(s, "/")
	}
	return nil
}
