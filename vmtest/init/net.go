package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// netConfig is the guest's side of the tap link (package vmtest's
// guestNetConfig: the JSON names are the contract).
type netConfig struct {
	// Modules are the NIC driver's modules in the initramfs, each after
	// those it depends on: Debian's kernels build virtio_net (and on 6.1
	// virtio_pci) as modules, and the guest has no modprobe.
	Modules []string `json:"modules"`
	// Addr is the guest's IPv4 address with its prefix, e.g. 10.213.1.2/30;
	// the host's end of the tap is in the same prefix, so the connected
	// route the kernel adds is the only one needed.
	Addr string `json:"addr"`
}

// nicWait bounds the wait for the NIC to show in /sys/class/net after its
// driver loaded: virtio probes the device from the module's init, but a
// slow emulated PCI bus is given time.
const nicWait = 20 * time.Second

// setupNet loads the NIC's modules, waits for the interface and gives it
// the address. It returns the interface's name.
func setupNet(c *netConfig) (string, error) {
	for _, m := range c.Modules {
		if err := loadModule(m); err != nil {
			return "", err
		}
	}
	ifname, err := waitNIC(nicWait)
	if err != nil {
		return "", err
	}
	ip, ipnet, err := net.ParseCIDR(c.Addr)
	if err != nil || ip.To4() == nil {
		return "", fmt.Errorf("configure %s: address %q: want IPv4/prefix", ifname, c.Addr)
	}
	if err := setAddr(ifname, ip.To4(), net.IP(ipnet.Mask).To4()); err != nil {
		return "", err
	}
	if err := linkUp(ifname); err != nil {
		return "", err
	}
	return ifname, nil
}

// loadModule loads one kernel module from a file, as insmod does, with
// finit_module(2). A module already there (built in, or a dependency
// loaded twice) is fine.
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}

// waitNIC returns the first network interface other than lo, waiting up
// to limit for one to appear.
func waitNIC(limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for {
		ents, _ := os.ReadDir("/sys/class/net")
		var names []string
		for _, e := range ents {
			if e.Name() != "lo" {
				names = append(names, e.Name())
			}
		}
		if len(names) > 0 {
			sort.Strings(names)
			return names[0], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no network interface but lo after %s: did the NIC's driver load? (qemu's -device virtio-net-pci)", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setAddr gives the interface an IPv4 address and netmask with the
// SIOCSIFADDR and SIOCSIFNETMASK ioctls ('ifconfig ADDR netmask M'); when
// the link comes up the kernel adds the route to the prefix.
func setAddr(ifname string, ip, mask net.IP) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("configure %s: socket: %w", ifname, err)
	}
	defer unix.Close(fd)
	for _, s := range []struct {
		req  uint
		what string
		v    net.IP
	}{{unix.SIOCSIFADDR, "address", ip}, {unix.SIOCSIFNETMASK, "netmask", mask}} {
		ifr, err := unix.NewIfreq(ifname)
		if err != nil {
			return fmt.Errorf("configure %s: %w", ifname, err)
		}
		if err := ifr.SetInet4Addr(s.v); err != nil {
			return fmt.Errorf("configure %s: %s %v: %w", ifname, s.what, s.v, err)
		}
		if err := unix.IoctlIfreq(fd, s.req, ifr); err != nil {
			return fmt.Errorf("configure %s: set %s %v: %w", ifname, s.what, s.v, err)
		}
	}
	return nil
}
