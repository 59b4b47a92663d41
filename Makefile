# Gatehouse. `make` builds the binary; `make run` boots the appliance in
# QEMU; `make test` runs every test, the QEMU boot tests included.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BUILT   ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# The key pair firmware bundles are signed with; its public half is built
# into the binary. A development pair is made here when absent: point
# BUNDLE_KEY_DIR at your own (made with `gatehouse bundle keygen DIR`).
BUNDLE_KEY_DIR ?= build/bundle-key
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.built=$(BUILT)

.PHONY: all build/gatehouse deps kernel image disk-image run run-disk test unit fuzz e2e bench-boot bench-net bench-firewall bench-relay bench-mailauth bench-fetch bench-nrpe bench-snmp bench-syslog bench-cluster bench-api bundle lint clean

all: build/gatehouse

# Static, stripped, version stamped.
build/gatehouse:
	@$(GO) run ./image/bundlekey -dir $(BUNDLE_KEY_DIR)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS) -X gatehouse/update.trustedKey=$$(cat $(BUNDLE_KEY_DIR)/bundle.pub)" -o $@ ./cmd/gatehouse

deps:
	@./test/deps.sh

# Debian's cloud kernel, unpacked under build/kernel (never installed).
kernel: deps
	@./image/fetch-kernel.sh build/kernel

image: build/gatehouse kernel
	$(GO) run ./image/mkimage -kernel build/kernel -binary build/gatehouse -out build/image

# A signed firmware bundle of the image: `gatehouse update FILE` installs it.
bundle: image
	build/gatehouse bundle sign --key $(BUNDLE_KEY_DIR)/bundle.key --version $(VERSION) --built $(BUILT) \
		--out build/image/gatehouse-$(VERSION).bundle build/image/vmlinuz build/image/initramfs.cpio.gz

run: image
	$(GO) run ./image/runqemu -image build/image

# The UEFI boot disk: GPT, the EFI system partition with systemd-boot and
# slot a holding this image, and an empty data partition. A new disk is a
# new machine: its EFI variable store goes too.
disk-image: image
	$(GO) run ./image/mkdisk -image build/image -out build/image/disk.img -version $(VERSION)
	rm -f build/image/disk-vars.fd

# Boots the disk under OVMF; reboots stay in the same QEMU.
run-disk: disk-image
	$(GO) run ./image/runqemu -disk build/image/disk.img

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/

# The patched go-smtp is a module of its own (./... stops at it): its own
# tests and ours of the patches run here too.
unit:
	$(GO) test -race -count=1 ./...
	$(GO) -C third_party/go-smtp test -race -count=1 ./...

# The readers of what remote peers send (POP3 responses, SMTP replies, NRPE
# packets, SNMP datagrams), the syslog formatter and the mail
# authentication and transport security parsers (DKIM keys, DNSBL zones,
# DKIM signature tags, From domains, Authentication-Results authserv-id,
# MTA-STS records and policies, TLSA records, TLS-RPT records), the line-end
# guard of message data (against the byte-wise rule) and our patched
# go-smtp's DATA and line length readers (against upstream's, in their own
# module's directory), fuzzed for a number of inputs each (FUZZTIME=2000000x,
# or a duration such as 10m, for a longer run). A count, not a duration: Go
# 1.26's fuzzing coordinator can report its own deadline as a failure at the
# end of a timed run (go.dev/issue/75804).
FUZZTIME ?= 50000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzResponses$$' -fuzztime $(FUZZTIME) ./collector/pop3/
	$(GO) test -run '^$$' -fuzz '^FuzzReply$$' -fuzztime $(FUZZTIME) ./delivery/
	$(GO) test -run '^$$' -fuzz '^FuzzReadQuery$$' -fuzztime $(FUZZTIME) ./services/nrpe/
	$(GO) test -run '^$$' -fuzz '^FuzzRequestDecoders$$' -fuzztime $(FUZZTIME) ./services/admin/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./update/
	$(GO) test -run '^$$' -fuzz '^FuzzParseEntry$$' -fuzztime $(FUZZTIME) ./update/
	$(GO) test -run '^$$' -fuzz '^FuzzBER$$' -fuzztime $(FUZZTIME) ./snmp/
	$(GO) test -run '^$$' -fuzz '^FuzzUSM$$' -fuzztime $(FUZZTIME) ./snmp/
	$(GO) test -run '^$$' -fuzz '^FuzzFormat$$' -fuzztime $(FUZZTIME) ./services/syslog/
	$(GO) test -run '^$$' -fuzz '^FuzzParseKey$$' -fuzztime $(FUZZTIME) ./dkimsign/
	$(GO) test -run '^$$' -fuzz '^FuzzParseZone$$' -fuzztime $(FUZZTIME) ./mailauth/
	$(GO) test -run '^$$' -fuzz '^FuzzSignatureTags$$' -fuzztime $(FUZZTIME) ./mailauth/
	$(GO) test -run '^$$' -fuzz '^FuzzFromDomains$$' -fuzztime $(FUZZTIME) ./mailauth/
	$(GO) test -run '^$$' -fuzz '^FuzzAuthServID$$' -fuzztime $(FUZZTIME) ./mailauth/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRecord$$' -fuzztime $(FUZZTIME) ./mtasts/
	$(GO) test -run '^$$' -fuzz '^FuzzParsePolicy$$' -fuzztime $(FUZZTIME) ./mtasts/
	$(GO) test -run '^$$' -fuzz '^FuzzTLSA$$' -fuzztime $(FUZZTIME) ./dane/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRecord$$' -fuzztime $(FUZZTIME) ./tlsrpt/
	$(GO) test -run '^$$' -fuzz '^FuzzXtext$$' -fuzztime $(FUZZTIME) ./mailmsg/
	$(GO) test -run '^$$' -fuzz '^FuzzParseAddress$$' -fuzztime $(FUZZTIME) ./mailmsg/
	$(GO) test -run '^$$' -fuzz '^FuzzESMTPParams$$' -fuzztime $(FUZZTIME) ./smtpd/
	$(GO) test -run '^$$' -fuzz '^FuzzORCPT$$' -fuzztime $(FUZZTIME) ./mailmsg/
	$(GO) test -run '^$$' -fuzz '^FuzzNewlineGuard$$' -fuzztime $(FUZZTIME) ./mailmsg/
	$(GO) -C third_party/go-smtp test -run '^$$' -fuzz '^FuzzDataReader$$' -fuzztime $(FUZZTIME) .
	$(GO) -C third_party/go-smtp test -run '^$$' -fuzz '^FuzzLineLimitReader$$' -fuzztime $(FUZZTIME) .

# Boots the image in QEMU and builds network namespaces with dnsmasq and
# chrony: needs root.
e2e: disk-image
	GATEHOUSE_IMAGE=$(CURDIR)/build/image GATEHOUSE_BIN=$(CURDIR)/build/gatehouse \
		$(GO) test -tags e2e -count=1 -timeout 40m -v ./test/

test: deps lint unit fuzz e2e

bench-boot: image
	$(GO) run ./test/bootbench -image build/image -binary build/gatehouse -n 5

# Needs root: it works in a network namespace of its own.
bench-net: deps build/gatehouse
	$(GO) run ./test/netbench -binary build/gatehouse

# Needs root and iptables-restore: a namespace of its own.
bench-firewall: deps
	$(GO) run ./test/fwbench

# Needs root: Postfix's smtp-source and smtp-sink, and the Postfix baseline
# script (-postfix-script, default ../shared/bench/postfix_baseline.sh).
bench-relay: deps build/gatehouse
	$(GO) run ./test/relaybench -binary build/gatehouse

# Needs root: a network namespace of its own with dnsmasq serving the
# sender's SPF, DKIM and DMARC records; the relay with smtp.checks against
# the baseline script's Postfix plus opendkim, opendmarc and policyd-spf
# (test/relaybench/postfix_milters.sh), then DKIM signing against opendkim.
bench-mailauth: deps build/gatehouse
	$(GO) run ./test/relaybench -mailauth -binary build/gatehouse -msgs 2000 -warmup 200 $(MAILAUTH_FLAGS)

# Needs root: Dovecot, fetchmail and smtp-sink in network namespaces of its
# own, and the fetchmail baseline script (-fetchmail-script, default
# ../shared/bench/fetchmail_baseline.sh), whose setup mode writes the Dovecot
# instance both sides poll.
bench-fetch: deps build/gatehouse
	$(GO) run ./test/fetchbench -binary build/gatehouse

# Needs root: a network namespace of its own with Gatehouse's NRPE server
# and Debian's nrpe daemon, asked by check_nrpe over TLS.
bench-nrpe: deps build/gatehouse
	$(GO) run ./test/nrpebench -binary build/gatehouse

# Needs root: snmpd and the SNMP agent in a network namespace of its own,
# both walked with snmpbulkwalk -Cr50 (v2c and v3 authPriv).
bench-snmp: deps build/gatehouse
	$(GO) run ./test/snmpbench -binary build/gatehouse

# Needs root: rsyslog (TLS) in a network namespace of its own.
bench-syslog: deps build/gatehouse
	$(GO) run ./test/syslogbench -binary build/gatehouse

# Needs root and chronyd: five nodes (3 backends, 2 frontends), each a
# `gatehouse run` in a network namespace of its own on one bridge, with
# chronyd serving time; times 100 config changes until every node runs
# them, the leader's view of the nodes, and an idle node's CPU and RSS.
bench-cluster: deps build/gatehouse
	$(GO) run ./test/clusterbench -binary build/gatehouse

# Needs root and OpenSSH's client: a network namespace of its own with
# Gatehouse's REST API and its SSH shell, 50 clients against each.
bench-api: deps build/gatehouse
	$(GO) run ./test/apibench -binary build/gatehouse

clean:
	rm -rf build
