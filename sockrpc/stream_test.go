package sockrpc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// countResp streams the numbers up to N, or until the caller hangs up when N is 0.
type countResp struct {
	Error string `json:"error,omitempty"`
	OK    bool   `json:"ok"`
	f     StreamFunc
}

func (r countResp) Streams() StreamFunc { return r.f }

func serveCounting(t *testing.T, ended chan<- error) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "count.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := NewServer(func(r request) countResp {
		if r.Verb == "plain" {
			return countResp{OK: true}
		}
		n, _ := strconv.Atoi(r.Arg)
		return countResp{OK: true, f: func(ctx context.Context, s *Stream) error {
			for i := 0; n == 0 || i < n; i++ {
				if err := s.Send(i); err != nil {
					ended <- err
					return err
				}
				if i%100 == 0 {
					if err := s.Flush(); err != nil {
						ended <- err
						return err
					}
				}
				select {
				case <-ctx.Done():
					ended <- ctx.Err()
					return nil
				default:
				}
			}
			ended <- nil
			return nil
		}}
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go srv.Serve(ctx, l)
	return sock
}

func TestFollowStreamsUntilTheServerEnds(t *testing.T) {
	ended := make(chan error, 1)
	sock := serveCounting(t, ended)
	var resp countResp
	var got []int
	err := Follow(context.Background(), sock, request{Verb: "count", Arg: "1000"}, &resp, func(line []byte) error {
		var i int
		if err := json.Unmarshal(line, &i); err != nil {
			return err
		}
		got = append(got, i)
		return nil
	})
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}
	if !resp.OK || len(got) != 1000 || got[999] != 999 {
		t.Fatalf("answer %+v, %d lines", resp, len(got))
	}
	// A plain answer is one line, as before: the stream ends at once.
	if err := Follow(context.Background(), sock, request{Verb: "plain"}, &resp, func([]byte) error { return errors.New("no lines expected") }); !errors.Is(err, io.EOF) {
		t.Fatalf("plain answer: %v", err)
	}
}

func TestFollowCallerHangsUpEndsTheStream(t *testing.T) {
	ended := make(chan error, 1)
	sock := serveCounting(t, ended)
	ctx, cancel := context.WithCancel(context.Background())
	var resp countResp
	n := 0
	err := Follow(ctx, sock, request{Verb: "count", Arg: "0"}, &resp, func([]byte) error {
		if n++; n == 500 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a caller that ends its own stream: %v", err)
	}
	select {
	case <-ended: // the server noticed and stopped sending
	case <-time.After(10 * time.Second):
		t.Fatal("the server went on streaming to a caller that hung up")
	}
}

func TestFollowRefusedAnswer(t *testing.T) {
	sock, _ := serve(t)
	var resp response
	err := Follow(context.Background(), sock, request{Verb: "fail", Arg: "x"}, &resp, func([]byte) error { return nil })
	var ae *AnswerError
	if !errors.As(err, &ae) || resp.Echo != "x" {
		t.Fatalf("err %v resp %+v", err, resp)
	}
}
