// Command twokey-vcsim runs the govmomi vCenter simulator with a small,
// realistic inventory for TwoKey's tests and local development.
//
// It listens on loopback only, requires credentials (no default password),
// and prints one line "VCSIM_URL=https://127.0.0.1:PORT/sdk" on stdout once
// the inventory is built. It serves until SIGTERM or SIGINT.
//
// Inventory (datacenter "lab"):
//
//	cluster prod:  prod-esx-01, prod-esx-02   network pg-prod
//	cluster dev:   dev-esx-01, dev-esx-02     network pg-dev
//	standalone:    dmz-esx-01                 network pg-dmz
//	datastores ds-prod, ds-dev, ds-dmz, ds-templates, mounted on every host;
//	  ds-prod sits in the datastore cluster (storage pod) dsc-prod.
//	VM folders: templates, prod-vms, dev-vms, dmz-vms
//	templates (powered off, on dev-esx-01 / ds-templates):
//	  tpl-debian12 (one NIC on pg-dev), tpl-rhel9 (two NICs, both on pg-dev),
//	  tpl-win2022 (no NIC)
//	VMs (powered on): prod-web-01 (prod-esx-01), prod-db-01 (prod-esx-02),
//	  dev-app-01 (dev-esx-01), dev-app-02 (dev-esx-02), dmz-proxy-01 (dmz-esx-01)
//	extra roles: VirtualMachineUser, VirtualMachinePowerUser
//
// -vms N and -hosts N scale the lab up to N virtual machines (templates
// included) and N hosts in all: extra hosts join the prod and dev clusters in
// turn (prod-esx-03, dev-esx-03, prod-esx-04, ...), extra VMs are spread over
// the three zones in turn (prod-vm-00001, dev-vm-00002, dmz-vm-00003, ...),
// each on one of its zone's hosts, datastore, port group and VM folder, so
// every VM carries a zone. Fewer than the lab's own (8 VMs, 5 hosts) is an
// error.
//
// With -default-model the lab inventory is not built: the simulator's own
// default vCenter inventory (DC0, DC0_C0, DC0_H0, LocalDS_0, "VM Network",
// DC0_DVPG0, ...) is served instead, as VMware's vcsim serves it. There -hosts
// N makes one standalone host and a cluster of N-1 (model.ClusterHost), and
// -vms N puts N/2 VMs (rounded up, model.Machine) in each of its two resource
// pools (the standalone host's and the cluster's).
//
// Unlike the plain simulator, RelocateVM_Task honours spec.deviceChange edits
// of network cards (as vCenter does), in the same task; -plain-relocate turns
// that off.
//
// Each lab is its own vCenter: it gets a random about.instanceUuid (kept in
// -data-dir, so a restart is the same vCenter again), or the one -instance-uuid
// names.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type zone struct {
	name      string
	cluster   string // empty: standalone host
	hosts     []string
	datastore string
	network   string
	vmFolder  string
}

var zones = []zone{
	{name: "prod", cluster: "prod", hosts: []string{"prod-esx-01", "prod-esx-02"}, datastore: "ds-prod", network: "pg-prod", vmFolder: "prod-vms"},
	{name: "dev", cluster: "dev", hosts: []string{"dev-esx-01", "dev-esx-02"}, datastore: "ds-dev", network: "pg-dev", vmFolder: "dev-vms"},
	{name: "dmz", hosts: []string{"dmz-esx-01"}, datastore: "ds-dmz", network: "pg-dmz", vmFolder: "dmz-vms"},
}

const (
	sharedDatastore = "ds-templates"
	prodPod         = "dsc-prod" // datastore cluster holding ds-prod
	templateFolder  = "templates"
	templateHost    = "dev-esx-01"
)

type vmSpec struct {
	name      string
	host      string
	datastore string
	networks  []string // one NIC per entry, in order; none: no NIC
	folder    string
	guestID   string
	cpus      int32
	memoryMB  int64
	template  bool
}

var vms = []vmSpec{
	{name: "tpl-debian12", host: templateHost, datastore: sharedDatastore, networks: []string{"pg-dev"}, folder: templateFolder, guestID: "debian10_64Guest", cpus: 1, memoryMB: 1024, template: true},
	{name: "tpl-rhel9", host: templateHost, datastore: sharedDatastore, networks: []string{"pg-dev", "pg-dev"}, folder: templateFolder, guestID: "rhel7_64Guest", cpus: 2, memoryMB: 2048, template: true},
	{name: "tpl-win2022", host: templateHost, datastore: sharedDatastore, folder: templateFolder, guestID: "windows9Server64Guest", cpus: 2, memoryMB: 4096, template: true},
	{name: "prod-web-01", host: "prod-esx-01", datastore: "ds-prod", networks: []string{"pg-prod"}, folder: "prod-vms", guestID: "debian10_64Guest", cpus: 2, memoryMB: 4096},
	{name: "prod-db-01", host: "prod-esx-02", datastore: "ds-prod", networks: []string{"pg-prod"}, folder: "prod-vms", guestID: "rhel7_64Guest", cpus: 4, memoryMB: 8192},
	{name: "dev-app-01", host: "dev-esx-01", datastore: "ds-dev", networks: []string{"pg-dev"}, folder: "dev-vms", guestID: "debian10_64Guest", cpus: 1, memoryMB: 2048},
	{name: "dev-app-02", host: "dev-esx-02", datastore: "ds-dev", networks: []string{"pg-dev"}, folder: "dev-vms", guestID: "debian10_64Guest", cpus: 1, memoryMB: 2048},
	{name: "dmz-proxy-01", host: "dmz-esx-01", datastore: "ds-dmz", networks: []string{"pg-dmz"}, folder: "dmz-vms", guestID: "debian10_64Guest", cpus: 1, memoryMB: 1024},
}

var extraRoles = []struct {
	name  string
	privs []string
}{
	{"VirtualMachineUser", []string{"System.Anonymous", "System.View", "System.Read",
		"VirtualMachine.Interact.ConsoleInteract", "VirtualMachine.Interact.PowerOn",
		"VirtualMachine.Interact.PowerOff", "VirtualMachine.Interact.Reset"}},
	{"VirtualMachinePowerUser", []string{"System.Anonymous", "System.View", "System.Read",
		"VirtualMachine.Interact.ConsoleInteract", "VirtualMachine.Interact.PowerOn",
		"VirtualMachine.Interact.PowerOff", "VirtualMachine.Interact.Reset",
		"VirtualMachine.Config.Settings"}},
}

// parseMethodDelay parses "CloneVM_Task=3000,RelocateVM_Task=2000".
func parseMethodDelay(s string) (map[string]int, error) {
	out := map[string]int{}
	s = strings.TrimSpace(s)
	if s == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		kv := strings.SplitN(part, "=", 2)
		if len(kv) != 2 || strings.TrimSpace(kv[0]) == "" {
			return nil, fmt.Errorf("bad -method-delay entry %q (want Method=milliseconds)", part)
		}
		ms, err := strconv.Atoi(strings.TrimSpace(kv[1]))
		if err != nil || ms < 0 {
			return nil, fmt.Errorf("bad delay in -method-delay entry %q", part)
		}
		out[strings.TrimSpace(kv[0])] = ms
	}
	return out, nil
}

// scale adds hosts and VMs to the lab's inventory up to the given totals
// (0: the lab as it is).
func scale(nvms, nhosts int) error {
	base := 0
	for _, z := range zones {
		base += len(z.hosts)
	}
	if nhosts != 0 && nhosts < base {
		return fmt.Errorf("-hosts %d: the lab has %d hosts of its own, ask for at least that many", nhosts, base)
	}
	if nvms != 0 && nvms < len(vms) {
		return fmt.Errorf("-vms %d: the lab has %d VMs and templates of its own, ask for at least that many", nvms, len(vms))
	}
	clustered := []int{}
	for i, z := range zones {
		if z.cluster != "" {
			clustered = append(clustered, i)
		}
	}
	for i := 0; base+i < nhosts; i++ {
		z := &zones[clustered[i%len(clustered)]]
		z.hosts = append(z.hosts, fmt.Sprintf("%s-esx-%02d", z.name, len(z.hosts)+1))
	}
	next := make([]int, len(zones)) // per zone: which of its hosts gets the next VM
	for i := 0; len(vms) < nvms; i++ {
		z := zones[i%len(zones)]
		vms = append(vms, vmSpec{
			name: fmt.Sprintf("%s-vm-%05d", z.name, i+1), host: z.hosts[next[i%len(zones)]%len(z.hosts)],
			datastore: z.datastore, networks: []string{z.network}, folder: z.vmFolder,
			guestID: "debian10_64Guest", cpus: 1, memoryMB: 1024,
		})
		next[i%len(zones)]++
	}
	return nil
}

func checkLoopback(listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("bad -listen %q: %v", listen, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("bad port in -listen %q", listen)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen must be a loopback IP address (e.g. 127.0.0.1:0), got %q", listen)
	}
	return nil
}

type lab struct {
	dataDir string // where datastore directories live; "" means a temp dir each
	ctx     context.Context
	c       *vim25.Client
	dc      *object.Datacenter
	folders *object.DatacenterFolders
	hosts   map[string]*object.HostSystem
	pools   map[string]*object.ResourcePool // host name -> pool of its compute resource
	dirs    []string
}

func (l *lab) wait(task *object.Task, err error) (types.AnyType, error) {
	if err != nil {
		return nil, err
	}
	info, err := task.WaitForResult(l.ctx, nil)
	if err != nil {
		return nil, err
	}
	return info.Result, nil
}

func (l *lab) build() error {
	ctx := l.ctx
	root := object.NewRootFolder(l.c)

	dc, err := root.CreateDatacenter(ctx, "lab")
	if err != nil {
		return fmt.Errorf("create datacenter: %v", err)
	}
	l.dc = dc
	if l.folders, err = dc.Folders(ctx); err != nil {
		return err
	}

	// Compute: clusters and a standalone host.
	l.hosts = map[string]*object.HostSystem{}
	l.pools = map[string]*object.ResourcePool{}
	for _, z := range zones {
		if z.cluster != "" {
			cluster, err := l.folders.HostFolder.CreateCluster(ctx, z.cluster, types.ClusterConfigSpecEx{})
			if err != nil {
				return fmt.Errorf("create cluster %s: %v", z.cluster, err)
			}
			pool, err := cluster.ResourcePool(ctx)
			if err != nil {
				return err
			}
			for _, h := range z.hosts {
				res, err := l.wait(cluster.AddHost(ctx, types.HostConnectSpec{HostName: h}, true, nil, nil))
				if err != nil {
					return fmt.Errorf("add host %s: %v", h, err)
				}
				l.hosts[h] = object.NewHostSystem(l.c, res.(types.ManagedObjectReference))
				l.pools[h] = pool
			}
		} else {
			for _, h := range z.hosts {
				res, err := l.wait(l.folders.HostFolder.AddStandaloneHost(ctx, types.HostConnectSpec{HostName: h}, true, nil, nil))
				if err != nil {
					return fmt.Errorf("add host %s: %v", h, err)
				}
				host := object.NewHostSystem(l.c, res.(types.ManagedObjectReference))
				pool, err := host.ResourcePool(ctx)
				if err != nil {
					return err
				}
				l.hosts[h] = host
				l.pools[h] = pool
			}
		}
	}

	// Storage: one datastore per zone, plus a shared one for templates, all
	// mounted on every host: the simulator creates a clone on the template's
	// host whatever the requested host is, and panics if that host does not
	// mount the target datastore.
	var all []string
	for _, z := range zones {
		all = append(all, z.hosts...)
	}
	for _, z := range zones {
		if err := l.datastore(z.datastore, all); err != nil {
			return err
		}
	}
	if err := l.datastore(sharedDatastore, all); err != nil {
		return err
	}

	// A datastore cluster holding the prod datastore.
	if err := l.storagePod(prodPod, zones[0].datastore); err != nil {
		return err
	}

	// Networks: one standard port group per zone.
	if err := l.networks(); err != nil {
		return err
	}

	// VM folders.
	vmFolders := map[string]*object.Folder{}
	names := []string{templateFolder}
	for _, z := range zones {
		names = append(names, z.vmFolder)
	}
	for _, n := range names {
		f, err := l.folders.VmFolder.CreateFolder(ctx, n)
		if err != nil {
			return fmt.Errorf("create folder %s: %v", n, err)
		}
		vmFolders[n] = f
	}

	for _, spec := range vms {
		if err := l.vm(spec, vmFolders[spec.folder]); err != nil {
			return fmt.Errorf("create vm %s: %v", spec.name, err)
		}
	}

	return l.roles()
}

// datastore creates a local datastore backed by a temp dir, mounted on hosts.
func (l *lab) datastore(name string, hosts []string) error {
	var dir string
	var err error
	if l.dataDir != "" {
		// Stable path, so datastore managed object ids (which embed the path)
		// stay the same when the lab is restarted with the same -data-dir.
		dir = filepath.Join(l.dataDir, name)
		if err = os.RemoveAll(dir); err == nil {
			err = os.MkdirAll(dir, 0700)
		}
	} else {
		dir, err = ioutil.TempDir("", "twokey-vcsim-"+name+"-")
	}
	if err != nil {
		return err
	}
	l.dirs = append(l.dirs, dir)

	var ref types.ManagedObjectReference
	for i, h := range hosts {
		dss, err := l.hosts[h].ConfigManager().DatastoreSystem(l.ctx)
		if err != nil {
			return err
		}
		ds, err := dss.CreateLocalDatastore(l.ctx, name, dir)
		if err != nil {
			return fmt.Errorf("datastore %s on %s: %v", name, h, err)
		}
		if i == 0 {
			ref = ds.Reference()
		}
	}

	// The simulator registers a fresh Datastore object per host for the same
	// path (same moref), each one knowing only its own host, and lists it once
	// per host in the datastore folder. Tidy that up: one entry, all mounts.
	obj := simulator.Map.Get(ref).(*simulator.Datastore)
	obj.Host = nil
	for _, h := range hosts {
		obj.Host = append(obj.Host, types.DatastoreHostMount{
			Key: l.hosts[h].Reference(),
			MountInfo: types.HostMountInfo{
				Path:       dir,
				AccessMode: string(types.HostMountModeReadWrite),
				Mounted:    types.NewBool(true),
				Accessible: types.NewBool(true),
			},
		})
	}
	folder := simulator.Map.Get(l.folders.DatastoreFolder.Reference()).(*simulator.Folder)
	folder.ChildEntity = dedupe(folder.ChildEntity)
	dcObj := simulator.Map.Get(l.dc.Reference()).(*simulator.Datacenter)
	dcObj.Datastore = dedupe(dcObj.Datastore)
	for _, h := range hosts {
		host := simulator.Map.Get(l.hosts[h].Reference()).(*simulator.HostSystem)
		host.Datastore = dedupe(host.Datastore)
		if p, ok := simulator.Map.Get(*host.Parent).(*simulator.ClusterComputeResource); ok {
			p.Datastore = dedupe(p.Datastore)
		}
		if p, ok := simulator.Map.Get(*host.Parent).(*mo.ComputeResource); ok {
			p.Datastore = dedupe(p.Datastore)
		}
	}
	return nil
}

// storagePod creates a datastore cluster and moves the datastore into it.
func (l *lab) storagePod(name, datastore string) error {
	pod, err := l.folders.DatastoreFolder.CreateStoragePod(l.ctx, name)
	if err != nil {
		return fmt.Errorf("create datastore cluster %s: %v", name, err)
	}
	ds, err := object.NewSearchIndex(l.c).FindChild(l.ctx, l.folders.DatastoreFolder, datastore)
	if err != nil || ds == nil {
		return fmt.Errorf("datastore %s not found", datastore)
	}
	if _, err := l.wait(pod.MoveInto(l.ctx, []types.ManagedObjectReference{ds.Reference()})); err != nil {
		return fmt.Errorf("move %s into %s: %v", datastore, name, err)
	}
	// The simulator's container views do not descend into storage pods
	// (vCenter's do), so a view over the inventory would miss the datastore.
	// Keep it listed in the datastore folder too; its parent stays the pod.
	folder := simulator.Map.Get(l.folders.DatastoreFolder.Reference()).(*simulator.Folder)
	folder.ChildEntity = dedupe(append(folder.ChildEntity, ds.Reference()))
	return nil
}

func dedupe(refs []types.ManagedObjectReference) []types.ManagedObjectReference {
	seen := map[types.ManagedObjectReference]bool{}
	var out []types.ManagedObjectReference
	for _, r := range refs {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// networks renames the datacenter's default "VM Network" to the first zone's
// port group, adds the others as standard port groups, and gives every host
// (and its compute resource) only its own zone's network.
func (l *lab) networks() error {
	dcObj := simulator.Map.Get(l.dc.Reference()).(*simulator.Datacenter)
	if len(dcObj.Network) == 0 {
		return fmt.Errorf("datacenter has no default network")
	}
	vmNetwork, ok := simulator.Map.Get(dcObj.Network[0]).(*mo.Network)
	if !ok {
		return fmt.Errorf("unexpected default network type %s", dcObj.Network[0].Type)
	}
	vmNetwork.Name = zones[0].network // mo.Network shadows ManagedEntity.Name
	vmNetwork.Entity().Name = vmNetwork.Name
	if s, ok := vmNetwork.Summary.(*types.NetworkSummary); ok {
		s.Name = vmNetwork.Name
	}

	netRefs := map[string]types.ManagedObjectReference{zones[0].network: vmNetwork.Self}
	for _, z := range zones[1:] {
		ns, err := l.hosts[z.hosts[0]].ConfigManager().NetworkSystem(l.ctx)
		if err != nil {
			return err
		}
		spec := types.HostPortGroupSpec{Name: z.network, VswitchName: "vSwitch0"}
		if err := ns.AddPortGroup(l.ctx, spec); err != nil {
			return fmt.Errorf("add port group %s: %v", z.network, err)
		}
	}
	for _, ref := range dcObj.Network {
		if n, ok := simulator.Map.Get(ref).(*mo.Network); ok {
			netRefs[n.Name] = ref
		}
	}

	for _, z := range zones {
		ref, ok := netRefs[z.network]
		if !ok {
			return fmt.Errorf("network %s missing", z.network)
		}
		for _, h := range z.hosts {
			host := simulator.Map.Get(l.hosts[h].Reference()).(*simulator.HostSystem)
			host.Network = []types.ManagedObjectReference{ref}
			switch p := simulator.Map.Get(*host.Parent).(type) {
			case *simulator.ClusterComputeResource:
				p.Network = []types.ManagedObjectReference{ref}
			case *mo.ComputeResource:
				p.Network = []types.ManagedObjectReference{ref}
			}
		}
		if n, ok := simulator.Map.Get(ref).(*mo.Network); ok {
			n.Host = nil
			for _, h := range z.hosts {
				n.Host = append(n.Host, l.hosts[h].Reference())
			}
		}
	}
	return nil
}

func (l *lab) vm(spec vmSpec, folder *object.Folder) error {
	ctx := l.ctx
	config := types.VirtualMachineConfigSpec{
		Name:     spec.name,
		GuestId:  spec.guestID,
		NumCPUs:  spec.cpus,
		MemoryMB: spec.memoryMB,
		Files:    &types.VirtualMachineFileInfo{VmPathName: "[" + spec.datastore + "]"},
	}

	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return err
	}
	devices = append(devices, scsi)
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), types.ManagedObjectReference{},
		config.Files.VmPathName+" "+path.Join(spec.name, "disk1.vmdk"))
	disk.CapacityInKB = 1024 * 1024
	devices = append(devices, disk)
	for i, network := range spec.networks {
		net, err := object.NewSearchIndex(l.c).FindChild(ctx, l.folders.NetworkFolder, network)
		if err != nil || net == nil {
			return fmt.Errorf("network %s not found", network)
		}
		backing, err := net.(object.NetworkReference).EthernetCardBackingInfo(ctx)
		if err != nil {
			return err
		}
		nic, err := object.EthernetCardTypes().CreateEthernetCard("vmxnet3", backing)
		if err != nil {
			return err
		}
		// vCenter's labels; the simulator would make up "ethernet-N".
		nic.GetVirtualDevice().DeviceInfo = &types.Description{Label: fmt.Sprintf("Network adapter %d", i+1), Summary: network}
		devices = append(devices, nic)
	}
	if config.DeviceChange, err = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd); err != nil {
		return err
	}

	host := l.hosts[spec.host]
	res, err := l.wait(folder.CreateVM(ctx, config, l.pools[spec.host], host))
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(l.c, res.(types.ManagedObjectReference))
	if spec.template {
		return vm.MarkAsTemplate(ctx)
	}
	_, err = l.wait(vm.PowerOn(ctx))
	return err
}

func (l *lab) roles() error {
	am := object.NewAuthorizationManager(l.c)
	for _, r := range extraRoles {
		if _, err := am.AddRole(l.ctx, r.name, r.privs); err != nil {
			return fmt.Errorf("add role %s: %v", r.name, err)
		}
	}
	return nil
}

// check verifies the built inventory has no objects with simulator-generated
// names left over.
func (l *lab) check() error {
	var bad []string
	for _, kind := range []string{"VirtualMachine", "HostSystem", "ClusterComputeResource", "Datastore", "Network", "Datacenter"} {
		for _, e := range simulator.Map.All(kind) {
			name := e.Entity().Name
			if strings.HasPrefix(name, "DC0") || strings.HasPrefix(name, "LocalDS") || name == "VM Network" {
				bad = append(bad, kind+":"+name)
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("unexpected default objects: %s", strings.Join(bad, ", "))
	}
	return nil
}

// labInstanceUUID is the vCenter identity of this lab: the flag's value, else
// the one kept in dataDir, else a new random one (kept there when dataDir is set).
func labInstanceUUID(flagValue, dataDir string) (string, error) {
	if flagValue != "" {
		parsed, err := uuid.Parse(flagValue)
		if err != nil {
			return "", fmt.Errorf("-instance-uuid %q: %v", flagValue, err)
		}
		return parsed.String(), nil
	}
	if dataDir == "" {
		return uuid.New().String(), nil
	}
	file := filepath.Join(dataDir, "instance-uuid")
	if raw, err := os.ReadFile(file); err == nil {
		if parsed, err := uuid.Parse(strings.TrimSpace(string(raw))); err == nil {
			return parsed.String(), nil
		}
	}
	id := uuid.New().String()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(file, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	return id, nil
}

// quietLog drops the simulator's note that an update wait ended with
// nothing to report. The inventory sync waits one heartbeat at a time, so
// under ./twokey run the note came every two seconds and buried the rest.
type quietLog struct{ out io.Writer }

func (q quietLog) Write(line []byte) (int, error) {
	if strings.Contains(string(line), "WaitForUpdates MaxWaitSeconds exceeded") {
		return len(line), nil
	}
	return q.out.Write(line)
}

func main() {
	log.SetPrefix("twokey-vcsim: ")
	log.SetFlags(log.LstdFlags)
	log.SetOutput(quietLog{os.Stderr})

	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on (port 0 picks a free port)")
	username := flag.String("username", "", "login user name (default: $VCSIM_USERNAME, else \"administrator@vsphere.local\")")
	password := flag.String("password", "", "login password (default: $VCSIM_PASSWORD; required)")
	methodDelay := flag.String("method-delay", "", "per-method delays in milliseconds, e.g. \"CloneVM_Task=3000,RelocateVM_Task=2000\"")
	dataDir := flag.String("data-dir", "", "directory for datastore contents (default: fresh temp dirs); reuse it across restarts to keep datastore ids stable")
	stdinEOF := flag.Bool("exit-on-stdin-eof", false, "also shut down when stdin is closed (ties the lab to its parent process)")
	trace := flag.Bool("trace", false, "write SOAP traffic to stderr")
	instanceUUID := flag.String("instance-uuid", "", "the vCenter's about.instanceUuid (default: random, kept in -data-dir across restarts)")
	plainRelocate := flag.Bool("plain-relocate", false, "serve RelocateVM_Task as the plain simulator does, ignoring spec.deviceChange (to test that clients read the result back)")
	defaultModel := flag.Bool("default-model", false, "serve the simulator's default vCenter inventory (DC0, DC0_C0, DC0_H0, ...) instead of the lab's")
	nvms := flag.Int("vms", 0, "number of virtual machines (templates included) in all (default: the lab's own 8; with -default-model 4)")
	nhosts := flag.Int("hosts", 0, "number of hosts in all (default: the lab's own 5; with -default-model 4)")
	flag.Parse()

	if *username == "" {
		*username = os.Getenv("VCSIM_USERNAME")
	}
	if *username == "" {
		*username = "administrator@vsphere.local"
	}
	if *password == "" {
		*password = os.Getenv("VCSIM_PASSWORD")
	}
	if *password == "" {
		log.Fatal("no password: pass -password or set VCSIM_PASSWORD (there is no default)")
	}
	if err := checkLoopback(*listen); err != nil {
		log.Fatal(err)
	}
	delays, err := parseMethodDelay(*methodDelay)
	if err != nil {
		log.Fatal(err)
	}
	simulator.Trace = *trace
	if *nvms < 0 || *nhosts < 0 {
		log.Fatal("-vms and -hosts must not be negative")
	}

	model := simulator.VPX()
	if *defaultModel {
		if *nhosts == 1 {
			log.Fatal("-hosts with -default-model: at least 2 (one standalone host, a cluster of the rest)")
		}
		if *nhosts > 1 {
			model.ClusterHost = *nhosts - model.Host
		}
		if *nvms > 0 {
			model.Machine = (*nvms + 1) / 2 // per resource pool: the standalone host's, the cluster's
		}
	} else {
		if err := scale(*nvms, *nhosts); err != nil {
			log.Fatal(err)
		}
		// Start from an empty vCenter; the lab builds its own named inventory.
		model.Datacenter = 0
		model.Portgroup = 0
		model.Host = 0
		model.Cluster = 0
		model.ClusterHost = 0
		model.Datastore = 0
		model.Machine = 0
		model.Autostart = false
	}
	// Speak the vSphere 7.0 API (the simulator's own default says 6.5): guest
	// customization sets a Linux root password by script only from 7.0 on,
	// and the portal refuses to clone where it cannot set one.
	model.ServiceContent.About.ApiVersion, model.ServiceContent.About.Version = "7.0.0.0", "7.0.0"
	if err := model.Create(); err != nil {
		log.Fatalf("create model: %v", err)
	}

	ctx := context.Background()
	client, err := vim25.NewClient(ctx, model.Service) // in-process, no network
	if err != nil {
		log.Fatalf("in-process client: %v", err)
	}
	if *dataDir != "" {
		if *dataDir, err = filepath.Abs(*dataDir); err != nil {
			log.Fatal(err)
		}
	}
	id, err := labInstanceUUID(*instanceUUID, *dataDir)
	if err != nil {
		model.Remove()
		log.Fatal(err)
	}
	// The simulator's own random instance uuid never reaches the service
	// content (it sets a copy), so every lab would claim the same one.
	simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance).Content.About.InstanceUuid = id
	l := &lab{ctx: ctx, c: client, dataDir: *dataDir}
	cleanup := func() {
		model.Remove()
		for _, d := range l.dirs {
			_ = os.RemoveAll(d)
		}
	}
	if !*defaultModel {
		if err := l.build(); err != nil {
			cleanup()
			log.Fatalf("build inventory: %v", err)
		}
		if err := l.check(); err != nil {
			cleanup()
			log.Fatal(err)
		}
	}

	// Only now, so building the inventory is not slowed down.
	model.DelayConfig.MethodDelay = delays

	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}
	model.Service.TLS = new(tls.Config)
	server := model.Service.NewServer()
	// No client knows the URL yet, so the handler can still be swapped.
	if !*plainRelocate {
		server.Config.Handler = relocateDevices(server.Config.Handler)
	}

	u := url.URL{Scheme: "https", Host: server.URL.Host, Path: server.URL.Path}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "VCSIM_URL=%s\n", u.String())
	_ = out.Flush()
	log.Printf("serving %s (user %q)", u.String(), *username)

	done := make(chan string, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { done <- (<-sig).String() }()
	if *stdinEOF {
		go func() {
			_, _ = io.Copy(ioutil.Discard, os.Stdin)
			done <- "end of stdin"
		}()
	}
	log.Printf("%s, shutting down", <-done)
	server.Close()
	cleanup()
}
