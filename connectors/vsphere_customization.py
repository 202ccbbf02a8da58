"""Guest customization for new VMs on vSphere: the specification that sets a
clone's host name and administrator password on its first boot, Sysprep for
Windows and LinuxPrep for Linux guests.

vSphere takes a Linux root password in LinuxPrep itself only from API 9.1;
on 7.0 to 9.0 a customization script sets it after the customization
(vSphere runs the script with "postcustomization" in the guest). Older
vCenters cannot set one, and the clone is refused rather than made with the
template's password. The password travels to vCenter over the session's TLS
connection and is never written anywhere else by the portal."""

from __future__ import annotations

from pyVmomi import vim
from pyVmomi.VmomiSupport import IsChildVersion

from .base import WINDOWS, GuestCustomization, OperationRejected

LINUXPREP_SETS_ROOT_SINCE = "vim.version.v9_1_0_0"
LINUXPREP_SCRIPTS_SINCE = "vim.version.v7_0"


def customization_spec(custom: GuestCustomization, nic_count: int, version: str) -> vim.vm.customization.Specification:
    """The specification for one clone with `nic_count` network cards (one
    DHCP setting each: vSphere wants one per card), for the API `version`
    the session speaks."""
    name = vim.vm.customization.FixedName(name=custom.hostname)
    password = vim.vm.customization.Password(value=custom.password, plainText=True)
    if custom.family == WINDOWS:
        identity = vim.vm.customization.Sysprep(
            guiUnattended=vim.vm.customization.GuiUnattended(
                password=password, autoLogon=False, autoLogonCount=0, timeZone=85
            ),
            userData=vim.vm.customization.UserData(
                computerName=name, fullName="Administrator", orgName="TwoKey", productId=""
            ),
            identification=vim.vm.customization.Identification(joinWorkgroup="WORKGROUP"),
        )
        options = vim.vm.customization.WinOptions(changeSID=True)
    else:
        identity = vim.vm.customization.LinuxPrep(hostName=name, domain="localdomain", hwClockUTC=True)
        if IsChildVersion(version, LINUXPREP_SETS_ROOT_SINCE):
            identity.password = password
        elif IsChildVersion(version, LINUXPREP_SCRIPTS_SINCE):
            identity.scriptText = root_password_script(custom.password)
        else:
            raise OperationRejected(
                "this vCenter's API is older than 7.0 and cannot set a Linux password in the guest "
                "customization; nothing was cloned"
            )
        options = vim.vm.customization.LinuxOptions()
    adapters = [
        vim.vm.customization.AdapterMapping(
            adapter=vim.vm.customization.IPSettings(ip=vim.vm.customization.DhcpIpGenerator())
        )
        for _ in range(nic_count)
    ]
    return vim.vm.customization.Specification(
        identity=identity,
        options=options,
        globalIPSettings=vim.vm.customization.GlobalIPSettings(),
        nicSettingMap=adapters,
    )


def root_password_script(password: str) -> str:
    """A customization script that sets root's password once customization
    is done. The password holds no quote (see approvals.guest_passwords)."""
    if "'" in password or "\n" in password:
        raise OperationRejected("a guest password must not contain quotes or line breaks")
    return (
        f"#!/bin/sh\nif [ \"$1\" = \"postcustomization\" ]; then\n  printf '%s\\n' 'root:{password}' | chpasswd\nfi\n"
    )
