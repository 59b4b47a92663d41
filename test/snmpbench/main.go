// snmpbench walks the SNMP agent's whole tree with net-snmp's snmpbulkwalk
// -Cr50, and net-snmp's snmpd's beside it in the same run (the method of
// ../shared/bench/snmpd_baseline.sh), over v2c and v3 authPriv
// (SHA-256/AES-128), in a network namespace of its own. It prints
// name=value lines (with -links links (veth pairs) in the namespace, which both
// agents serve in ifTable): varbinds, the median walk time, the time per varbind,
// the same with one snmpget's time (the client's start, the same for both
// agents) taken off, and Gatehouse's time per varbind over snmpd's.
//
// Needs root, snmpd and snmp (Debian).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gatehouse/test/bench"
)

func main() {
	binary := flag.String("binary", "build/gatehouse", "the gatehouse binary")
	reps := flag.Int("n", 5, "walks per agent and protocol")
	links = flag.Int("links", 100, "links in the namespace (veth pairs)")
	flag.Parse()
	bench.Main("snmpbench", func(ctx context.Context) error { return run(ctx, *binary, *reps) })
}

var links *int

func run(ctx context.Context, binPath string, reps int) error {
	bin, err := bench.Binary(binPath)
	if err != nil {
		return err
	}
	if err := bench.Tools("apt-get install snmp snmpd", "snmpd", "snmpbulkwalk", "snmpget", "ip"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "snmpbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns := fmt.Sprintf("ghsnmpbench%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	exec.Command("ip", "-n", ns, "link", "set", "lo", "up").Run()
	// Links, so that both trees are thousands of varbinds and a walk's
	// time is the agent's rather than the client's start (an appliance
	// with many VLANs looks like this).
	var batch strings.Builder
	for i := range *links / 2 {
		fmt.Fprintf(&batch, "link add v%d type veth peer name w%d\nlink set v%d up\nlink set w%d up\n", i, i, i, i)
	}
	add := exec.Command("ip", "-n", ns, "-batch", "-")
	add.Stdin = strings.NewReader(batch.String())
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("ip link add: %v: %s", err, out)
	}

	write := func(name, content string) string {
		f := filepath.Join(dir, name)
		os.WriteFile(f, []byte(content), 0o600)
		return f
	}
	start := func(log string, args ...string) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
		f, err := os.Create(filepath.Join(dir, log))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = f, f
		return cmd, cmd.Start()
	}
	stop := func(c *exec.Cmd) {
		c.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			c.Process.Kill()
			<-done
		}
	}

	// net-snmp's snmpd, configured as the baseline script configures it.
	snmpdConf := write("snmpd.conf", `agentAddress udp:127.0.0.1:1161
rocommunity bench 127.0.0.1
createUser benchuser SHA-256 benchauthpass AES benchprivpass
rouser benchuser priv
sysLocation bench
sysContact bench@example.test
`)
	snmpd, err := start("snmpd.log", "snmpd", "-f", "-Lo", "-C", "-c", snmpdConf, "-p", filepath.Join(dir, "snmpd.pid"), "--persistentDir="+filepath.Join(dir, "persist"))
	if err != nil {
		return err
	}
	defer stop(snmpd)
	gh, err := start("gatehouse.log", bin, "run", "--state", filepath.Join(dir, "state"), "--config", write("gatehouse.yaml", fmt.Sprintf(`
snmp:
  listen: "127.0.0.1:1162"
  location: bench
  contact: bench@example.test
  rate_per_source: 100000
  communities:
    - {community: bench, allow: [127.0.0.1]}
  users:
    - {name: benchuser, auth: {protocol: sha256, password_file: %s}, priv: {protocol: aes, password_file: %s}, allow: [127.0.0.1]}
`, write("auth", "benchauthpass"), write("priv", "benchprivpass"))))
	if err != nil {
		return err
	}
	defer stop(gh)

	client := func(tool string, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, tool, "-m", "", "-On", "-t", "5", "-r", "0"}, args...)...)
	}
	for _, port := range []string{"1161", "1162"} {
		ok := false
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if client("snmpget", "-v2c", "-c", "bench", "127.0.0.1:"+port, ".1.3.6.1.2.1.1.3.0").Run() == nil {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("the agent on port %s does not answer", port)
		}
	}
	protos := []struct {
		name string
		args []string
	}{
		{"v2c", []string{"-v2c", "-c", "bench"}},
		{"v3", []string{"-v3", "-l", "authPriv", "-u", "benchuser", "-a", "SHA-256", "-A", "benchauthpass", "-x", "AES", "-X", "benchprivpass"}},
	}
	median := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	for _, p := range protos {
		// The client's own start and one exchange: what a walk costs
		// beside the agent's answers.
		var gets []time.Duration
		for range reps {
			t0 := time.Now()
			if err := client("snmpget", append(p.args, "127.0.0.1:1161", ".1.3.6.1.2.1.1.3.0")...).Run(); err != nil {
				return fmt.Errorf("snmpget: %w", err)
			}
			gets = append(gets, time.Since(t0))
		}
		get := median(gets)
		perVarbind := map[string]float64{}
		for _, a := range []struct{ name, port string }{{"snmpd", "1161"}, {"gatehouse", "1162"}} {
			var times []time.Duration
			n := 0
			for range reps {
				t0 := time.Now()
				out, err := client("snmpbulkwalk", append(append([]string{"-Cr50"}, p.args...), "127.0.0.1:"+a.port, ".1")...).Output()
				d := time.Since(t0)
				if err != nil {
					return fmt.Errorf("%s %s walk: %w", a.name, p.name, err)
				}
				n = strings.Count(string(out), "\n")
				times = append(times, d)
			}
			m := median(times)
			net := max(m-get, 0)
			fmt.Printf("%s_%s_varbinds=%d\n", a.name, p.name, n)
			fmt.Printf("%s_%s_walk_ms=%.1f\n", a.name, p.name, float64(m.Microseconds())/1000)
			fmt.Printf("%s_%s_us_per_varbind=%.2f\n", a.name, p.name, float64(m.Microseconds())/float64(n))
			fmt.Printf("%s_%s_net_us_per_varbind=%.2f\n", a.name, p.name, float64(net.Microseconds())/float64(n))
			perVarbind[a.name] = float64(net.Microseconds()) / float64(n)
		}
		fmt.Printf("client_%s_snmpget_ms=%.1f\n", p.name, float64(get.Microseconds())/1000)
		if perVarbind["snmpd"] > 0 {
			fmt.Printf("ratio_%s_net_per_varbind_gatehouse_over_snmpd=%.2f\n", p.name, perVarbind["gatehouse"]/perVarbind["snmpd"])
		}
	}
	return nil
}
