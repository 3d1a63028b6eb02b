// SPDX-License-Identifier: GPL-2.0
/*
 * The handover formats this kernel accepts, as an ELF note of vmlinux.
 *
 * A live update is only safe if the next kernel can read what this one hands
 * over. Before the point of no return, userspace (luod, luoctl check-image)
 * reads the kernel image it is about to load and looks for this note, so the
 * table is built at compile time into every kernel, whatever its Live Update
 * configuration, and is never read by the kernel itself.
 *
 * Note name:  "LUO"
 * Note type:  LUO_NOTE_FORMATS (1)
 * Descriptor, in the byte order of the kernel:
 *
 *	u32	version		LUO_FORMATS_VERSION (1): the layout of this
 *				descriptor, not of any handover format
 *	char	compatibles[]	NUL-terminated compatible strings, one after
 *				the other up to the end of the descriptor;
 *				empty strings (the padding to a multiple of 4
 *				bytes) are not entries
 *
 * A reader must skip a note of another version. A format is accepted if its
 * compatible string is in the table. The table lists exactly the formats this
 * kernel is built to read from the previous kernel:
 *
 *   - the Kexec HandOver root (KHO_FDT_COMPATIBLE), with KEXEC_HANDOVER;
 *   - the LUO core (LUO_ABI_COMPATIBLE), with LIVEUPDATE, whichever of the C
 *     and the Rust LUO is built;
 *   - each LUO file handler built in (MEMFD_LUO_FH_COMPATIBLE with either
 *     memfd handler, HUGETLB_MEMFD_RS_LUO_FH_COMPATIBLE with the Rust one
 *     and HUGETLBFS, VFIO_PCI_RS_LUO_FH_COMPATIBLE, the Rust LUO's test
 *     handler), and the test FLBs of LIVEUPDATE_TEST.
 *
 * A kernel without the note predates it: its formats cannot be checked. The
 * table says what the kernel is built with, not whether Live Update will be
 * enabled when it boots (kho=off, liveupdate=off).
 *
 * In vmlinux the note is in the .notes section and the PT_NOTE segment; on
 * x86 the compressed payload of a bzImage is that ELF file, and a running
 * kernel shows its own notes in /sys/kernel/notes. See
 * Documentation/core-api/liveupdate-formats.rst.
 */

#include <linux/elfnote.h>
#include <linux/kho/abi/hugetlb_memfd_rs.h>
#include <linux/kho/abi/kexec_handover.h>
#include <linux/kho/abi/luo.h>
#include <linux/kho/abi/memfd.h>
#include <linux/kho/abi/vfio_pci_rs.h>
#include <linux/kho/abi/vtd_lu_rs.h>
#include <linux/types.h>

#define LUO_NOTE_NAME		"LUO"
#define LUO_NOTE_FORMATS	1
#define LUO_FORMATS_VERSION	1

#ifdef CONFIG_KEXEC_HANDOVER
#define LUO_FMT_KHO		KHO_FDT_COMPATIBLE "\0"
#else
#define LUO_FMT_KHO		""
#endif

#ifdef CONFIG_LIVEUPDATE
#define LUO_FMT_CORE		LUO_ABI_COMPATIBLE "\0"
#else
#define LUO_FMT_CORE		""
#endif

/* mm/memfd_luo.c or mm/memfd_luo_rs.rs: the same "memfd-v2". */
#if defined(CONFIG_LIVEUPDATE_MEMFD_C) || defined(CONFIG_LIVEUPDATE_MEMFD_RUST)
#define LUO_FMT_MEMFD		MEMFD_LUO_FH_COMPATIBLE "\0"
#else
#define LUO_FMT_MEMFD		""
#endif

/* mm/memfd_luo_rs.rs, for hugetlbfs memfds: not the RFC's "huge-memfd-v1". */
#if defined(CONFIG_LIVEUPDATE_MEMFD_RUST) && defined(CONFIG_HUGETLBFS)
#define LUO_FMT_HUGETLB		HUGETLB_MEMFD_RS_LUO_FH_COMPATIBLE "\0"
#else
#define LUO_FMT_HUGETLB		""
#endif

/* drivers/vfio/pci/vfio_pci_luo_rs.rs: not upstream's "vfio-pci-v1". */
#ifdef CONFIG_VFIO_PCI_LIVEUPDATE_RUST
#define LUO_FMT_VFIO_PCI	VFIO_PCI_RS_LUO_FH_COMPATIBLE "\0"
#else
#define LUO_FMT_VFIO_PCI	""
#endif

/*
 * A vfio-pci device kept running through the kexec ("vfio-pci-rs-v2"), and
 * the VT-d translation kept for it: only a kernel that adopts that
 * translation may take such a device, since one that turns translation off
 * lets the device's DMA reach the physical addresses its IOVAs name.
 */
#if defined(CONFIG_VFIO_PCI_LIVEUPDATE_RUST) && defined(CONFIG_INTEL_IOMMU_LIVEUPDATE)
#define LUO_FMT_VFIO_PCI_RUNNING	VFIO_PCI_RS_RUNNING_LUO_FH_COMPATIBLE "\0" \
					VTD_LU_RS_SUBTREE "\0"
#else
#define LUO_FMT_VFIO_PCI_RUNNING	""
#endif

/* The test file handler of kernel/liveupdate/test_handler.rs. */
#ifdef CONFIG_LIVEUPDATE_RUST_TEST
#define LUO_FMT_RUST_TEST	"luo-rs-test-v1\0"
#else
#define LUO_FMT_RUST_TEST	""
#endif

/* The three test FLBs of lib/tests/liveupdate.c. */
#ifdef CONFIG_LIVEUPDATE_TEST
#define LUO_FMT_TEST_FLBS				\
	LIVEUPDATE_TEST_FLB_COMPATIBLE(0) "\0"		\
	LIVEUPDATE_TEST_FLB_COMPATIBLE(1) "\0"		\
	LIVEUPDATE_TEST_FLB_COMPATIBLE(2) "\0"
#else
#define LUO_FMT_TEST_FLBS	""
#endif

#define LUO_FORMATS							\
	(LUO_FMT_KHO LUO_FMT_CORE LUO_FMT_MEMFD LUO_FMT_HUGETLB		\
	 LUO_FMT_VFIO_PCI LUO_FMT_VFIO_PCI_RUNNING LUO_FMT_RUST_TEST	\
	 LUO_FMT_TEST_FLBS)

struct luo_formats_desc {
	u32 version;
	char compatibles[sizeof(LUO_FORMATS)];
};

ELFNOTE32(LUO_NOTE_NAME, LUO_NOTE_FORMATS,
	  ((struct luo_formats_desc){ LUO_FORMATS_VERSION, LUO_FORMATS }));
