package command

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"gatehouse/sockrpc"
	"gatehouse/status"
)

// clusterCmd is `gatehouse cluster ...`: it talks to the cluster service.
func clusterCmd(e *Env, args []string) error {
	format, ttl := "text", time.Hour
	pos, err := e.parse("cluster", args, func(fs *flag.FlagSet) {
		fs.StringVar(&format, "format", "text", "text or json (status)")
		fs.DurationVar(&ttl, "ttl", time.Hour, "how long a join token is good for (token)")
	})
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return e.usage("cluster")
	}
	req := status.ClusterRequest{Verb: pos[0]}
	nargs := map[string]int{"status": 1, "init": 1, "token": 1, "join": 3, "remove": 2, "recover": 1}
	want, ok := nargs[pos[0]]
	if !ok || len(pos) != want {
		return e.usage("cluster")
	}
	switch pos[0] {
	case "status":
		if err := checkFormat(format); err != nil {
			return err
		}
	case "token":
		req.TTL = ttl
	case "join":
		req.Address, req.Token = pos[1], pos[2]
	case "remove":
		req.Node = pos[1]
	}
	var resp status.ClusterResponse
	// A join or an init waits until the node runs the cluster's config.
	if err := sockrpc.Call(e.Paths.ClusterSocket(), 90*time.Second, req, &resp); err != nil {
		var de *sockrpc.DialError
		if errors.As(err, &de) {
			return fmt.Errorf("the cluster service does not answer (is there a cluster: section in the config?): %w", err)
		}
		return err
	}
	switch {
	case resp.Status != nil && format == "json":
		return e.writeJSON(resp.Status)
	case resp.Status != nil:
		resp.Status.Write(e.Out)
	case resp.Token != "":
		fmt.Fprintln(e.Out, resp.Token)
	case resp.Message != "":
		fmt.Fprintln(e.Out, resp.Message)
	}
	return nil
}
