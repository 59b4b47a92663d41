package linuxfw

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
)

// Backend installs a ruleset in the kernel and reads it back.
type Backend interface {
	Name() string
	Apply(Ruleset) error
	Remove() error
	Show() (string, error) // what is installed, as the kernel has it
}

// Applied says how a ruleset went in (Updater).
type Applied struct {
	// Replaced: the rules were replaced, and their counters (the drops)
	// start at zero again. Else only the peer sets' elements changed, in
	// Sets sets, Added and Removed address ranges.
	Replaced       bool
	Sets           int
	Added, Removed int
	// Retried is why changing the rules in place failed, when a
	// replacement of all of them followed and went in.
	Retried error
}

// Updater is a backend that changes only what differs from what it
// installed last, and says what it did.
type Updater interface {
	Update(Ruleset) (Applied, error)
}

// Name is the backend's name in config and status.
func (NFT) Name() string { return "nftables" }

// Name is the backend's name in config and status.
func (IPTables) Name() string { return "iptables" }

// Select returns the backend the config asks for. "auto" is nftables
// when the kernel speaks nf_tables, else iptables when its programs are
// there: a kernel without nf_tables still gets a firewall.
func Select(pref string) (Backend, error) {
	switch pref {
	case "nftables":
		return NewNFT(), nil
	case "iptables":
		if err := IPTablesAvailable(); err != nil {
			return nil, err
		}
		return IPTables{}, nil
	case "auto", "":
		nftErr := NFTAvailable()
		if nftErr == nil {
			return NewNFT(), nil
		}
		iptErr := IPTablesAvailable()
		if iptErr == nil {
			return IPTables{}, nil
		}
		return nil, errors.Join(fmt.Errorf("firewall: no backend: %w", nftErr), iptErr)
	}
	return nil, fmt.Errorf("firewall: unknown backend %q", pref)
}

// ByName is the backend a status names, for reading back what it installed.
func ByName(name string) (Backend, error) {
	switch name {
	case "nftables":
		return NFT{}, nil
	case "iptables":
		return IPTables{}, nil
	}
	return nil, fmt.Errorf("firewall: unknown backend %q", name)
}

// NFTAvailable says whether the kernel answers nf_tables requests: a
// kernel built without it refuses the netlink family.
func NFTAvailable() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("firewall: nftables: %w", err)
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return fmt.Errorf("firewall: nftables not available in this kernel: %w", err)
	}
	return nil
}

// Ban drops new connections from a to the ports of the ban set named set,
// for d, in whichever backend's firewall is installed: the nftables
// table's set, else the iptables recent list.
func Ban(set string, a netip.Addr, d time.Duration) error {
	nftErr := NFT{}.Ban(set, a, d)
	if nftErr == nil {
		return nil
	}
	if err := (IPTables{}).Ban(set, a, d); err != nil {
		return errors.Join(nftErr, err)
	}
	return nil
}

// Unban lifts a's ban in the ban set named set, in whichever backend's
// firewall is installed; lifting a ban that is not there is no error.
func Unban(set string, a netip.Addr) error {
	nftErr := NFT{}.Unban(set, a)
	if nftErr == nil {
		return nil
	}
	if err := (IPTables{}).Unban(set, a); err != nil {
		return errors.Join(nftErr, err)
	}
	return nil
}
