// Package control is PID 1's control socket: the Unix socket over which
// the CLI and the SSH shell (a process of its own) ask the running
// appliance for its status and tell it what to do. One JSON request per
// connection, one JSON response (sockrpc); `follow` streams the log feed
// after its response.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gatehouse/init/logring"
	"gatehouse/sockrpc"
	"gatehouse/status"
)

// Request is one call.
type Request struct {
	Verb    string `json:"verb"`              // status | logs | follow | reload | poweroff | reboot
	Service string `json:"service,omitempty"` // for logs
	Lines   int    `json:"lines,omitempty"`   // for logs; 0 means all kept
	File    string `json:"file,omitempty"`    // for apply: a config file on the appliance
	Within  string `json:"within,omitempty"`  // for apply: confirm within this duration; "0s": no rollback
	// Since, for follow: the Seq of the last log record the caller took;
	// the records still kept after it come first. 0: all still kept.
	Since uint64 `json:"since,omitempty"`
	// AllowDowngrade, for update: install a bundle older than the running
	// firmware.
	AllowDowngrade bool `json:"allow_downgrade,omitempty"`
	// Local, for apply and confirm: on this node only, even in a cluster
	// (the cluster service installing the cluster's config, or the
	// operator's way around a cluster service that is down).
	Local bool `json:"local,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error  string   `json:"error,omitempty"`
	Status *Status  `json:"status,omitempty"`
	Lines  []string `json:"lines,omitempty"`
	// Following says that log records (logring.Record), one JSON line
	// each, follow this response until the caller hangs up.
	Following bool `json:"following,omitempty"`

	stream sockrpc.StreamFunc
}

// Streams implements sockrpc.Streamer: the log feed after a follow.
func (r Response) Streams() sockrpc.StreamFunc { return r.stream }

// Status is what the appliance reports about itself.
type Status struct {
	Version    string         `json:"version"`
	Hostname   string         `json:"hostname"`
	Mode       string         `json:"mode"` // pid1 | host | emergency
	StartedAt  time.Time      `json:"started_at"`
	UptimeS    float64        `json:"uptime_s"`
	Ready      bool           `json:"ready"`
	ReadyMS    int64          `json:"ready_ms,omitempty"`
	Config     string         `json:"config"`
	Warnings   []string       `json:"warnings,omitempty"`
	Data       Data           `json:"data"`
	Orphans    int64          `json:"orphans_reaped"`
	Services   []status.State `json:"services"`
	Conditions []string       `json:"conditions,omitempty"` // e.g. clock-synced
	Emergency  string         `json:"emergency,omitempty"`  // why PID 1 is in its emergency shell
	// Firmware is the slot this boot came from and the last update's
	// outcome; nil when the appliance was not booted from its disk image.
	Firmware *Firmware `json:"firmware,omitempty"`
	// ConfirmBy is when an applied config that is not confirmed by then
	// is rolled back (`config apply --confirm-within`); nil: none pending.
	ConfirmBy *time.Time `json:"confirm_by,omitempty"`
}

// Firmware is which slot (A/B) the appliance booted from, and how the
// last firmware update went.
type Firmware struct {
	Slot        string `json:"slot"`         // a or b
	DefaultSlot string `json:"default_slot"` // the one the boot loader picks
	Version     string `json:"version"`
	Built       int64  `json:"built"` // the build's commit time, unix seconds
	// Trial says this boot is the single trial of a new firmware: it
	// becomes the default once it stayed healthy for the trial period.
	Trial  bool          `json:"trial"`
	Update *UpdateReport `json:"update,omitempty"`
	// Problem is why updates cannot be installed now (the EFI system
	// partition not found, say).
	Problem string `json:"problem,omitempty"`
}

// UpdateReport is the last firmware update.
type UpdateReport struct {
	Version string    `json:"version"`
	Slot    string    `json:"slot"`
	Phase   string    `json:"phase"` // pending, armed, trial, failed, done
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// String is the update's one line in status and on the console.
func (u UpdateReport) String() string {
	switch u.Phase {
	case "failed":
		return fmt.Sprintf("update to %s failed: %s", u.Version, u.Reason)
	case "done":
		return fmt.Sprintf("updated to %s (slot %s) at %s", u.Version, u.Slot, u.At.UTC().Format(time.RFC3339))
	case "trial":
		return fmt.Sprintf("trial boot of %s (slot %s) since %s", u.Version, u.Slot, u.At.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("update to %s (slot %s) written at %s: it boots once at the next reboot", u.Version, u.Slot, u.At.UTC().Format(time.RFC3339))
}

// Data describes the persistent data disk.
type Data struct {
	Path     string `json:"path"` // /data, or the state directory in host mode
	Mounted  bool   `json:"mounted"`
	Device   string `json:"device,omitempty"`
	ReadOnly bool   `json:"read_only"`
	Problem  string `json:"problem,omitempty"`
}

// Backend is what the socket, the console and the SSH shell act on: the
// running appliance, or the emergency shell's reduced view of it.
type Backend interface {
	Status() Status
	Logs(service string, lines int) ([]string, error)
	Shutdown(action string) error // "poweroff" or "reboot"
	Reload() error                // read the config again; an invalid one changes nothing
	// Apply installs a new config; unless confirmWithin is 0, the previous
	// one comes back if Confirm does not follow in time.
	Apply(file string, confirmWithin time.Duration) error
	Confirm() error
}

// LocalApplier is a Backend that is a cluster node: Apply and Confirm go
// cluster-wide, these act on this node alone.
type LocalApplier interface {
	ApplyLocal(file string, confirmWithin time.Duration) error
	ConfirmLocal() error
}

// Updater is a Backend that installs firmware bundles: PID 1 booted from
// its disk image (A/B slots).
type Updater interface {
	// Update verifies the bundle in file, writes it to the inactive slot
	// and arms a single trial boot of it; the reboot is the caller's.
	Update(file string, allowDowngrade bool) error
}

// Follower is a Backend that serves the log feed: every service's output
// lines, PID 1's own and the kernel's, those still kept after since first,
// then as they come (PID 1 does; the emergency shell does not).
type Follower interface {
	Follow(since uint64) (*logring.Subscription, error)
}

// followBatch bounds how many records are written before a flush.
const followBatch = 512

// follow streams sub's records until ctx ends or the caller stops reading.
// PID 1 never waits on it: the feed drops what the subscription cannot
// hold, and says so on the next record sent.
func follow(sub *logring.Subscription) sockrpc.StreamFunc {
	return func(ctx context.Context, st *sockrpc.Stream) error {
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return nil
			case r := <-sub.C():
				if err := st.Send(sub.Stamp(r)); err != nil {
					return err
				}
			}
		more:
			for range followBatch {
				select {
				case r := <-sub.C():
					if err := st.Send(sub.Stamp(r)); err != nil {
						return err
					}
				default:
					break more
				}
			}
			if err := st.Flush(); err != nil {
				return err
			}
		}
	}
}

// Serve answers requests on a Unix socket at path until ctx ends. Only
// root may steer the appliance: the socket is mode 0600, and each caller's
// credentials are checked besides (sockrpc.Server).
func Serve(ctx context.Context, path string, b Backend, log *slog.Logger) error {
	log = log.With("subsystem", "control")
	l, err := sockrpc.Listen(path)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	s := sockrpc.NewServer(func(req Request) Response {
		if req.Verb == "poweroff" || req.Verb == "reboot" {
			log.Info("shutdown requested over control socket", "action", req.Verb)
		}
		return Answer(b, req)
	}, log)
	if err := s.Serve(ctx, l); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	return nil
}

// Answer carries out one request against b.
func Answer(b Backend, req Request) Response {
	switch req.Verb {
	case "status":
		st := b.Status()
		return Response{Status: &st}
	case "logs":
		lines, err := b.Logs(req.Service, req.Lines)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Lines: lines}
	case "follow":
		f, ok := b.(Follower)
		if !ok {
			return Response{Error: "no log feed here"}
		}
		sub, err := f.Follow(req.Since)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Following: true, stream: follow(sub)}
	case "apply":
		within, err := time.ParseDuration(req.Within)
		if err != nil {
			return Response{Error: fmt.Sprintf("confirm within: %v", err)}
		}
		apply := b.Apply
		if la, ok := b.(LocalApplier); ok && req.Local {
			apply = la.ApplyLocal
		}
		if err := apply(req.File, within); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	case "confirm":
		confirm := b.Confirm
		if la, ok := b.(LocalApplier); ok && req.Local {
			confirm = la.ConfirmLocal
		}
		if err := confirm(); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	case "reload":
		if err := b.Reload(); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	case "update":
		u, ok := b.(Updater)
		if !ok {
			return Response{Error: "this appliance does not install firmware updates"}
		}
		if err := u.Update(req.File, req.AllowDowngrade); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	case "poweroff", "reboot":
		if err := b.Shutdown(req.Verb); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	}
	return Response{Error: fmt.Sprintf("unknown verb %q", req.Verb)}
}

// Call sends one request to the socket at path. An error the appliance
// answered comes with its Response.
func Call(path string, req Request) (*Response, error) {
	var resp Response
	err := sockrpc.Call(path, 30*time.Second, req, &resp)
	var de *sockrpc.DialError
	var ae *sockrpc.AnswerError
	switch {
	case err == nil:
		return &resp, nil
	case errors.As(err, &ae):
		return &resp, err
	case errors.As(err, &de) && de.Missing():
		return nil, fmt.Errorf("no gatehouse is running with control socket %s", path)
	}
	return nil, fmt.Errorf("control: %w", err)
}

// Follow hands each log record the appliance's feed passes on to each,
// until ctx ends (nil), the appliance ends the stream or each fails (an
// error): first those the feed still keeps after since (a record's Seq;
// 0 for all it keeps), then each as it comes. A record's Dropped says how
// many were lost before it because the caller did not keep up.
func Follow(ctx context.Context, path string, since uint64, each func(logring.Record) error) error {
	var resp Response
	err := sockrpc.Follow(ctx, path, Request{Verb: "follow", Since: since}, &resp, func(line []byte) error {
		var r logring.Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("control: log record: %w", err)
		}
		return each(r)
	})
	var de *sockrpc.DialError
	if errors.As(err, &de) && de.Missing() {
		return fmt.Errorf("no gatehouse is running with control socket %s", path)
	}
	if err != nil {
		return fmt.Errorf("control: follow: %w", err)
	}
	return nil
}

// Client is a Backend on the far side of the socket: what the SSH shell,
// a separate process, acts on.
type Client struct{ Socket string }

// Status implements Backend.
func (c Client) Status() Status {
	resp, err := Call(c.Socket, Request{Verb: "status"})
	if err != nil || resp.Status == nil {
		return Status{Mode: "unreachable", Emergency: fmt.Sprintf("control socket: %v", err)}
	}
	return *resp.Status
}

// Logs implements Backend.
func (c Client) Logs(service string, lines int) ([]string, error) {
	resp, err := Call(c.Socket, Request{Verb: "logs", Service: service, Lines: lines})
	if err != nil {
		return nil, err
	}
	return resp.Lines, nil
}

// Shutdown implements Backend.
func (c Client) Shutdown(action string) error {
	_, err := Call(c.Socket, Request{Verb: action})
	return err
}

// Reload implements Backend.
func (c Client) Reload() error {
	_, err := Call(c.Socket, Request{Verb: "reload"})
	return err
}

// Apply implements Backend.
func (c Client) Apply(file string, within time.Duration) error {
	_, err := Call(c.Socket, Request{Verb: "apply", File: file, Within: within.String()})
	return err
}

// Confirm implements Backend.
func (c Client) Confirm() error {
	_, err := Call(c.Socket, Request{Verb: "confirm"})
	return err
}

// updateTimeout bounds an update: the bundle is read twice (verified,
// then written) and the new firmware checks the config.
const updateTimeout = 5 * time.Minute

// Update implements Updater.
func (c Client) Update(file string, allowDowngrade bool) error {
	var resp Response
	err := sockrpc.Call(c.Socket, updateTimeout, Request{Verb: "update", File: file, AllowDowngrade: allowDowngrade}, &resp)
	var de *sockrpc.DialError
	if errors.As(err, &de) && de.Missing() {
		return fmt.Errorf("no gatehouse is running with control socket %s", c.Socket)
	}
	return err
}
