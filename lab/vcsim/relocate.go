package main

// vcsim (govmomi 0.24) moves a VM's host, pool and datastore in
// RelocateVM_Task but ignores spec.deviceChange, which vCenter applies in the
// same task: that is how a VM's network cards move with it (a migration
// between zones). relocateDevices wraps the SOAP handler and, once the
// simulator's relocate task has succeeded, applies the network card edits of
// its spec to the VM; an edit it cannot apply fails the task, as vCenter
// would. No other task is created.

import (
	"bytes"
	"fmt"
	"io/ioutil"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

var taskReturnval = regexp.MustCompile(`<returnval type="Task">([^<]+)</returnval>`)

func relocateDevices(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/sdk") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := ioutil.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.Body = ioutil.NopCloser(bytes.NewReader(body))
		if !bytes.Contains(body, []byte("RelocateVM_Task")) || !bytes.Contains(body, []byte("deviceChange")) {
			next.ServeHTTP(w, r)
			return
		}
		method, err := simulator.UnmarshalBody(types.TypeFunc(), body)
		req, ok := (*types.RelocateVM_Task)(nil), false
		if err == nil {
			req, ok = method.Body.(*types.RelocateVM_Task)
		}
		if !ok || len(req.Spec.DeviceChange) == 0 {
			next.ServeHTTP(w, r)
			return
		}

		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			if m := taskReturnval.FindSubmatch(rec.Body.Bytes()); m != nil {
				ref := types.ManagedObjectReference{Type: "Task", Value: string(m[1])}
				task, _ := simulator.Map.Get(ref).(*simulator.Task)
				vm, _ := simulator.Map.Get(req.This).(*simulator.VirtualMachine)
				if task != nil && vm != nil && task.Info.State == types.TaskInfoStateSuccess {
					if fault := editNics(vm, req.Spec.DeviceChange); fault != nil {
						simulator.Map.Update(task, []types.PropertyChange{
							{Name: "info.state", Val: types.TaskInfoStateError},
							{Name: "info.error", Val: &types.LocalizedMethodFault{
								Fault:            fault,
								LocalizedMessage: fmt.Sprintf("%T", fault),
							}},
						})
					}
				}
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// nicNetwork is the network a card's backing names, as vcsim records it in
// VirtualMachine.network; ok is false when the network does not exist.
func nicNetwork(vm *simulator.VirtualMachine, backing types.BaseVirtualDeviceBackingInfo) (types.ManagedObjectReference, bool) {
	switch b := backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		if b.Network == nil {
			// vcsim's own convention (configureDevice): by device name in the datacenter.
			dc := datacenterOf(vm)
			if dc == nil {
				return types.ManagedObjectReference{}, false
			}
			e := simulator.Map.FindByName(b.DeviceName, dc.Network)
			if e == nil {
				return types.ManagedObjectReference{}, false
			}
			ref := e.Reference()
			b.Network = &ref
		}
		return *b.Network, simulator.Map.Get(*b.Network) != nil
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		for _, e := range simulator.Map.All("DistributedVirtualPortgroup") {
			if pg, ok := e.(*simulator.DistributedVirtualPortgroup); ok && pg.Key == b.Port.PortgroupKey {
				return types.ManagedObjectReference{Type: "DistributedVirtualPortgroup", Value: pg.Key}, true
			}
		}
	}
	return types.ManagedObjectReference{}, false
}

func datacenterOf(vm *simulator.VirtualMachine) *simulator.Datacenter {
	var ref *types.ManagedObjectReference = vm.Parent
	for i := 0; ref != nil && i < 64; i++ {
		obj := simulator.Map.Get(*ref)
		if dc, ok := obj.(*simulator.Datacenter); ok {
			return dc
		}
		e, ok := obj.(mo.Entity)
		if !ok {
			return nil
		}
		ref = e.Entity().Parent
	}
	return nil
}

// editNics applies "edit" device changes of network cards: each card keeps
// its key and gets the new backing. All are checked before any is applied.
func editNics(vm *simulator.VirtualMachine, changes []types.BaseVirtualDeviceConfigSpec) types.BaseMethodFault {
	var fault types.BaseMethodFault
	simulator.Map.WithLock(vm, func() {
		devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
		type edit struct {
			card    types.BaseVirtualEthernetCard
			backing types.BaseVirtualDeviceBackingInfo
		}
		var edits []edit
		for i, c := range changes {
			spec := c.GetVirtualDeviceConfigSpec()
			invalid := &types.InvalidDeviceSpec{
				InvalidVmConfig: types.InvalidVmConfig{Property: fmt.Sprintf("spec.deviceChange[%d]", i)},
				DeviceIndex:     int32(i),
			}
			want, ok := spec.Device.(types.BaseVirtualEthernetCard)
			if spec.Operation != types.VirtualDeviceConfigSpecOperationEdit || !ok {
				fault = invalid // the lab moves network cards only
				return
			}
			card, ok := devices.FindByKey(spec.Device.GetVirtualDevice().Key).(types.BaseVirtualEthernetCard)
			if !ok {
				fault = invalid
				return
			}
			backing := want.GetVirtualEthernetCard().Backing
			if _, ok := nicNetwork(vm, backing); !ok {
				fault = invalid
				return
			}
			edits = append(edits, edit{card, backing})
		}
		for _, e := range edits {
			e.card.GetVirtualEthernetCard().Backing = e.backing
		}
		var networks []types.ManagedObjectReference
		seen := map[types.ManagedObjectReference]bool{}
		for _, d := range devices {
			if c, ok := d.(types.BaseVirtualEthernetCard); ok {
				if ref, ok := nicNetwork(vm, c.GetVirtualEthernetCard().Backing); ok && !seen[ref] {
					seen[ref] = true
					networks = append(networks, ref)
				}
			}
		}
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "config.hardware.device", Val: []types.BaseVirtualDevice(devices)},
			{Name: "network", Val: networks},
		})
	})
	return fault
}
