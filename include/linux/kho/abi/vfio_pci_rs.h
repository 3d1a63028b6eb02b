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
 * page preserved with kho_alloc_preserve(); the page starts with this
 * struct, in the byte order of the kernel (x86_64: little-endian). The next
 * kernel finds the device by domain and bus/device/function and opens a new
 * cdev file for it.
 */
#ifndef _LINUX_KHO_ABI_VFIO_PCI_RS_H
#define _LINUX_KHO_ABI_VFIO_PCI_RS_H

#include <linux/compiler_types.h>
#include <linux/types.h>

#define VFIO_PCI_RS_LUO_FH_COMPATIBLE "vfio-pci-rs-v1"

/**
 * struct vfio_pci_rs_device_ser - A preserved vfio-pci device
 * @domain: the PCI domain (segment) of the device
 * @bdf: its bus, device and function, as pci_dev_id() returns them
 */
struct vfio_pci_rs_device_ser {
	u32 domain;
	u16 bdf;
} __packed;

#endif /* _LINUX_KHO_ABI_VFIO_PCI_RS_H */
