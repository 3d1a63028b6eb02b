/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The "vfio-pci-rs-v1" live update handover of a vfio-pci device file, the
 * format of the Rust vfio-pci handler (drivers/vfio/pci/vfio_pci_luo_rs.rs).
 *
 * It starts like the "vfio-pci-v1" record of the posted, unmerged series
 * "vfio/pci: Base Live Update support for VFIO" (v5), but its semantics
 * differ, so it goes under a compatible string of its own: a kernel with
 * that series finds no handler for these files instead of misreading them.
 *
 * The u64 handle that LUO stores for the file is the physical address of a
 * page preserved with kho_alloc_preserve(); the page starts with struct
 * vfio_pci_rs_device_ser, in the byte order of the kernel (x86_64:
 * little-endian). The next kernel finds the device by domain and
 * bus/device/function, checks that it is the same device, and opens a new
 * cdev file for it.
 *
 * The handler also publishes the list of the devices it preserved, struct
 * vfio_pci_rs_held, as the KHO subtree VFIO_PCI_RS_HELD_SUBTREE (one page),
 * so that the next kernel knows them from boot, before their files are
 * retrieved.
 */
#ifndef _LINUX_KHO_ABI_VFIO_PCI_RS_H
#define _LINUX_KHO_ABI_VFIO_PCI_RS_H

#include <linux/compiler_types.h>
#include <linux/types.h>

#define VFIO_PCI_RS_LUO_FH_COMPATIBLE "vfio-pci-rs-v1"

/*
 * The same record for a device that keeps running through the kexec: not
 * reset, bus mastering on, its VT-d translation handed over as
 * "vtd-lu-rs-v1" (include/linux/kho/abi/vtd_lu_rs.h) for the next kernel to
 * adopt.
 */
#define VFIO_PCI_RS_RUNNING_LUO_FH_COMPATIBLE "vfio-pci-rs-v2"

/* vfio_pci_rs_device_ser.flags: @dsn holds the device serial number. */
#define VFIO_PCI_RS_SER_F_DSN	0x1

/**
 * struct vfio_pci_rs_device_ser - A preserved vfio-pci device
 * @domain: the PCI domain (segment) of the device
 * @bdf: its bus, device and function, as pci_dev_id() returns them
 * @vendor: its vendor ID
 * @device: its device ID
 * @subsystem_vendor: its subsystem vendor ID
 * @subsystem_device: its subsystem ID
 * @flags: VFIO_PCI_RS_SER_F_*; the other bits are 0
 * @dsn: its PCI Express Device Serial Number (pci_get_dsn()) with
 *       VFIO_PCI_RS_SER_F_DSN, else 0
 *
 * @domain and @bdf are the "vfio-pci-v1" record. The IDs and the serial
 * number say which device was there: after the bus is renumbered, another
 * one may be, and the next kernel must not hand that one over.
 */
struct vfio_pci_rs_device_ser {
	u32 domain;
	u16 bdf;
	u16 vendor;
	u16 device;
	u16 subsystem_vendor;
	u16 subsystem_device;
	u16 flags;
	u64 dsn;
} __packed;

#define VFIO_PCI_RS_HELD_SUBTREE "vfio-pci-rs-held-v1"

/**
 * struct vfio_pci_rs_held_entry - A device in the list of preserved devices
 * @dev: the device, as in its file's record
 * @handle: the file's handle, the physical address of that record's page
 */
struct vfio_pci_rs_held_entry {
	struct vfio_pci_rs_device_ser dev;
	u64 handle;
} __packed;

/**
 * struct vfio_pci_rs_held - The list of preserved devices (one page)
 * @count: how many entries follow, at most what fits in the page
 * @reserved: 0
 * @entries: one per preserved device file
 */
struct vfio_pci_rs_held {
	u32 count;
	u32 reserved;
	struct vfio_pci_rs_held_entry entries[];
} __packed;

#endif /* _LINUX_KHO_ABI_VFIO_PCI_RS_H */
