#!/usr/bin/env bash
# deps.sh -- install the Debian packages that building the image, `make run`
# and the tests need. Does nothing when they are all there already.
set -euo pipefail
packages=(
  qemu-system-x86   # boots the image
  ovmf              # UEFI firmware for QEMU: boots the disk image (make run-disk, test/disk_test.go)
  systemd-boot-efi  # systemd-boot's EFI binary, the disk image's boot loader (only the file is used)
  dosfstools        # mkfs.vfat: the disk image's EFI system partition
  mtools            # mcopy, mmd: fill that partition without mounting it
  fdisk             # sfdisk: the disk image's unit test reads its GPT back with it
  kmod              # depmod, for the kernel's modules.dep
  e2fsprogs         # mkfs.ext4, dumpe2fs, e2fsck: the data disk
  ca-certificates   # the CA bundle the image carries
  iproute2          # ip netns, veth: the tests' network namespaces
  dnsmasq-base      # DHCP and DNS peer (the binary only: no service)
  chrony            # NTP peer, run with -x so it never sets the clock
  nftables          # nft: read back what the firewall installed
  iputils-ping      # ICMP through the firewall
  openssh-client    # ssh, ssh-keygen: the SSH shell's real client
  iptables          # the iptables backend's tests; iptables-restore, the baseline of make bench-firewall
  postfix           # smtp-sink, smtp-source, and the baseline of make bench-relay
  fetchmail         # the baseline of make bench-fetch (run by its script, never as a service)
  swaks             # the SMTP test client
  curl              # the REST API's real client (test/admin_test.go)
  chromium          # the web console's real browser, headless (test/web_test.go)
  fonts-liberation  # chromium's recommended fonts: the console's text renders in the screenshots
  libnet-ssleay-perl  # swaks --tls and AUTH over TLS (only a recommend of swaks)
  dovecot-imapd     # the internal IMAP server (AUTH checks; the collector's peer)
  dovecot-pop3d     # its POP3 side
  nagios-nrpe-plugin  # check_nrpe 4.1: the NRPE server's real client
  nagios-nrpe-server  # nrpe 4.1: the baseline of make bench-nrpe (never started as a system service)
  monitoring-plugins-basic  # check_load, the plugin the nrpe baseline runs
  snmp              # snmpget, snmpwalk, snmpbulkwalk, snmptranslate: the SNMP agent's real manager; its MIBs
  snmpd             # net-snmp's agent: the baseline of make bench-snmp
  snmptrapd         # net-snmp's trap receiver: the agent's traps and informs
  rsyslog rsyslog-gnutls  # the syslog receiver (UDP, TCP, TLS), run with its own config, never the host's
  python3-dkim      # dkimpy: the independent verifier of our DKIM signatures (test/dkim_test.go)
  python3-nacl      # dkimpy needs it for Ed25519 (RFC 8463) signatures; named although python3-dkim pulls it in today
  unbound           # the validating resolver of the DANE test (test/transportsec_test.go): serves a signed zone, sets the AD bit
  ldnsutils         # ldns-keygen, ldns-signzone: sign that zone with a fresh key (its DS is unbound's trust anchor)
  opendkim          # Postfix's DKIM milter: the baseline of make bench-mailauth (verify and sign mode; run in the foreground with its own config, never as a service)
  opendmarc         # Postfix's DMARC milter: the same baseline (foreground, own config)
  postfix-policyd-spf-python  # policyd-spf, Postfix's SPF policy service: the same baseline (spawned by the bench's own Postfix instance)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}"
# Packages such as chrony would start their daemon on this host, and
# chronyd would then steer the host's clock: forbid service starts while
# installing (the usual policy-rc.d), and restore what was there.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then saved=$(mktemp) && $sudo cp -p "$policy" "$saved"; fi
printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy"
restore() { if [ -n "$saved" ]; then $sudo mv "$saved" "$policy"; else $sudo rm -f "$policy"; fi; }
trap restore EXIT
$sudo apt-get update -qq
# Postfix asks what kind of mail system this is: none (the tests run their
# own instances; the package's own is never started).
echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
